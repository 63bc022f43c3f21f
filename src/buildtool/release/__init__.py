"""Releases: the gate (every artifact proven), the release directory, uploads (GitHub, a
PEP 503 index, a registry) and the wheel index.

May import: everything but lab and the CLI.
"""
