"""Developer and CI sessions. `nox -l` lists them; slow ones are not run by default."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff on the code, scripts and tests; shellcheck on scripts/*.sh when installed."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "scripts", "noxfile.py")
    sh = sorted(str(p) for p in __import__("pathlib").Path("scripts").glob("*.sh"))
    if sh:
        session.run("shellcheck", *sh, external=True, success_codes=[0])


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/, and the import contracts (pyproject.toml) with import-linter."""
    session.install("-e", ".[dev]")
    session.run("mypy")
    session.chdir("src")
    session.run("lint-imports", "--config", "../pyproject.toml", "--no-cache")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests only (fast, start no process)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Every reader under hypothesis's long, random profile (thousands of generated and
    mutated inputs each; the default test run uses a bounded, derandomized one)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit/test_fuzz.py", "-p", "no:cacheprovider", *session.posargs,
                env={"HYPOTHESIS_PROFILE": "fuzz"})


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Real build + smoke of the cpu target from the vendored tree (minutes)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/integration", *session.posargs)


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """Integration tests too long for CI on 2 cores: the vulkan image (about 30 minutes)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/integration", "-m", "slow", *session.posargs)


@nox.session(python=PYTHON)
def generate_schema(session: nox.Session) -> None:
    """Regenerate schema/*.schema.json from the dataclasses (configuration, lock, records)."""
    session.install("-e", ".")
    session.run("python", "scripts/generate_schema.py")


@nox.session(python=PYTHON, name="build")
@nox.parametrize("target", ["cpu", "cublas11", "cublas12", "cublas13", "hipblas", "intel",
                            "vulkan", "metal"])
def build_target(session: nox.Session, target: str) -> None:
    """buildtool build --target TARGET (smoke included); `nox -s "build(target='cpu')"`."""
    session.install("-e", ".")
    session.run("buildtool", "build", "--target", target, *session.posargs)


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """Smoke-test every tarball and wheel in dist/ (or those given after --)."""
    from pathlib import Path

    session.install("-e", ".")
    found = [*Path("dist").glob("*.tar.gz"), *Path("dist").glob("*.whl")]
    for artifact in session.posargs or sorted(str(p) for p in found):
        session.run("buildtool", "smoke", artifact)


@nox.session(python=PYTHON)
def bench_cache(session: nox.Session) -> None:
    """The shared compile cache on a Redis server on loopback: cold, warm from the remote
    (a fresh clone with an empty local ccache), warm-local, and the server stopped halfway."""
    session.install("-e", ".")
    session.run("python", "scripts/bench_cache.py", *session.posargs)


@nox.session(python=PYTHON)
def cuda(session: nox.Session) -> None:
    """Build cublas13, cublas12 and cublas11 for real with toolkits buildtool provisions
    (one GPU architecture each; ~20+ min per target on 2 cores); prints wall times."""
    session.install("-e", ".")
    session.run("python", "scripts/prove_cuda.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_variants(session: nox.Session) -> None:
    """tokens/s of the all-variants cpu artifact vs the host-flags one, side by side on a
    ~230 MB Q4_0 synthetic model (goal: >= 0.97 x in prompt and generation)."""
    session.install("-e", ".")
    session.run("python", "scripts/bench_cpu_variants.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_emulated(session: nox.Session) -> None:
    """The smoke on emulated CPU models: per artifact given and model its claim covers, the
    variant chosen, tokens/s under emulation and seconds, side by side."""
    session.install("-e", ".")
    session.run("python", "scripts/bench_emulated.py", *session.posargs)


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """Build-speed figures for the cpu target (cold vs raw CMake, warm ccache, no-op); ~25 min."""
    session.install("-e", ".")
    session.run("python", "scripts/bench_build.py", *session.posargs)
