"""Proof that an artifact is what it claims: the smoke test (llama-bench on a model and the
verdict), its outputs against a reference (numerics), the ISA audit of shipped binaries, the
synthetic model.

May import: everything below it (foundation, detect, source, toolchains, backends, config,
artifacts). Never the build pipeline, release, lab or the CLI.
"""
