"""Configuration: the matrix and recipes (model, project), one frozen resolved target per
build (resolve), the exact commands and key (plan), names (naming), what stops a build before
CMake (preflight), CI matrices and recommendations (matrix), and the session that holds them.

May import: the foundation modules, detect, source, toolchains, backends. Never artifact
kinds, verify, the build pipeline, release, lab or the CLI.
"""
