"""Hardware labs: run every fitting artifact on a lab machine and record everything; merge
many machines' results into one report.

May import: everything but release internals and the CLI.
"""
