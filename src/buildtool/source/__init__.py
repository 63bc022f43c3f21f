"""The llama.cpp source: the lock, fetching and verifying a source, safe extraction.

May import: the foundation modules only.
"""
