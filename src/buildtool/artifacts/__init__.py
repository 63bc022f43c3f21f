"""Artifact kinds (tarball, wheel, image): each one module that owns how it is built, opened
for a smoke test, verified for a release and whether a host can run it.

May import: the foundation modules, detect, source, toolchains, backends, config. A kind
never imports another kind, verify, the build pipeline, release, lab or the CLI.
"""
