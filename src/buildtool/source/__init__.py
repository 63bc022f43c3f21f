"""The llama.cpp source: the lock, fetching and verifying a source, safe extraction
(``vendor``); writing a lock for another version (``pin``); the patch queue (``patches``).

May import: the foundation modules only.
"""
