"""The GitHub workflows take their job list from `buildtool matrix --format github`."""

from __future__ import annotations

import re

import yaml
from click.testing import CliRunner

from buildtool import cli
from tests.unit.helpers import ROOT


def _workflow(name: str) -> dict:  # type: ignore[type-arg]
    loaded: dict = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())  # type: ignore[type-arg]
    return loaded


def _matrix_keys(job: dict) -> set[str]:  # type: ignore[type-arg]
    """The matrix.* keys a job's expressions use."""
    text = yaml.safe_dump(job, width=1 << 20)
    return {key for expr in re.findall(r"\$\{\{(.*?)\}\}", text)
            for key in re.findall(r"(?<![.\w])matrix\.([a-z_]+)", expr)}


def _rows(fmt: str = "github") -> list[dict]:  # type: ignore[type-arg]
    """The entries `buildtool matrix --format FMT` prints."""
    out = CliRunner().invoke(cli.cli, ["--matrix", str(ROOT / "build_matrix.yaml"), "matrix",
                                       "--format", fmt], catch_exceptions=False).output
    rows: list[dict] = yaml.safe_load(out)["include"]  # type: ignore[type-arg]
    return rows


def _fed_by(job_name: str, output: str, fmt: str, needed: set[str]) -> list[dict]:  # type: ignore[type-arg]
    """Check that a job's matrix is `buildtool matrix --format FMT` (through the matrix
    job's OUTPUT) and that every matrix key it uses is in every entry; return the entries."""
    wf = _workflow("build.yml")
    steps = wf["jobs"]["matrix"]["steps"]
    assert any(f"buildtool matrix --format {fmt}" in s.get("run", "") for s in steps)
    job = wf["jobs"][job_name]
    assert job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.matrix.outputs.{output}) }}}}"
    used = _matrix_keys(job)
    assert needed <= used
    entries = _rows(fmt)
    assert entries, "empty job matrix"
    for entry in entries:
        assert used <= set(entry), f"{job_name} uses keys the matrix does not emit: {used}"
    return entries


def test_build_workflow_is_fed_by_buildtool_matrix(fake_tools: object) -> None:
    _fed_by("build", "matrix", "github", {"target", "runner", "cpu", "platform"})
    text = (ROOT / ".github" / "workflows" / "build.yml").read_text()
    # no target list is copied by hand into the workflow (family names may appear in `if:`)
    for target in ("cublas11", "cublas12", "cublas13", "hipblas"):
        assert target not in text


def test_arm64_is_built_natively_on_arm64_runners(fake_tools: object) -> None:
    rows = {(e["target"], e["platform"]): e for e in _rows()}
    cpu_arm = rows[("cpu", "linux-aarch64")]
    assert cpu_arm["runner"] == "ubuntu-24.04-arm"
    assert cpu_arm["cpu"] == "all-variants"
    assert cpu_arm["build_env"] == "recipes/build-env/Dockerfile"  # Debian 11, clang 16
    assert rows[("cpu", "linux-x86_64")]["runner"] == "ubuntu-24.04"
    # a target whose platforms leave out linux-aarch64 gets no arm64 job
    assert ("cublas11", "linux-aarch64") not in rows and ("openvino", "linux-aarch64") \
        not in rows
    build = _workflow("build.yml")["jobs"]["build"]
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert runs.count("--platform ${{ matrix.platform }}") == 2  # plan and build
    wheels = {(e["target"], e["job"]): e for e in _rows("github-wheels")}
    assert wheels[("cpu", "linux-aarch64")]["archs"] == "aarch64"
    assert wheels[("cpu", "linux-aarch64")]["runner"] == "ubuntu-24.04-arm"
    assert wheels[("cpu", "linux-x86_64")]["archs"] == "x86_64"
    assert wheels[("cpu", "macos")]["archs"] == "arm64 x86_64"
    images = _fed_by("images", "images", "github-images",
                     {"platform", "runner", "llama_cpp", "targets"})
    assert {(e["platform"], e["runner"], e["llama_cpp"]) for e in images} == {
        ("linux-x86_64", "ubuntu-24.04", "b11312"),
        ("linux-aarch64", "ubuntu-24.04-arm", "b11312")}
    x86 = next(e for e in images if e["platform"] == "linux-x86_64")
    assert "-t cpu" in x86["targets"] and "-t cublas12" in x86["targets"]


def test_gpu_toolchains_build_in_their_vendor_containers(fake_tools: object) -> None:
    rows = {e["target"]: e for e in _rows() if e["platform"] != "linux-aarch64"}
    assert rows["cublas12"]["container"] == "nvidia/cuda:12.4.1-devel-ubuntu22.04"
    assert rows["cublas13"]["container"].startswith("nvidia/cuda:13.0")
    assert rows["hipblas"]["container"].startswith("rocm/dev-ubuntu-24.04:")
    assert rows["intel"]["container"].startswith("intel/oneapi-basekit:")
    assert rows["cpu"]["container"] == rows["vulkan"]["container"] == ""
    assert rows["metal"]["runner"].startswith("macos")
    assert {r["smoke"] for n, r in rows.items() if n.startswith("cublas")} == {"--no-smoke"}
    assert rows["vulkan"]["smoke"] == rows["cpu"]["smoke"] == "--smoke"


def test_runners_install_what_each_recipe_names(fake_tools: object) -> None:
    """Families that build on the runner itself get their recipe's ci-packages and the
    toolchain buildtool provisions for them; in a vendor container, neither."""
    rows = {e["target"]: e for e in _rows() if e["platform"] != "linux-aarch64"}
    assert rows["vulkan"]["packages"].split() == ["glslc", "libvulkan-dev",
                                                  "mesa-vulkan-drivers", "debian-archive-keyring"]
    assert rows["vulkan"]["toolchain"] == "vulkan-headers"
    assert rows["openvino"]["packages"] == "opencl-headers ocl-icd-opencl-dev"
    assert rows["openvino"]["toolchain"] == "openvino-2026.4.1"
    assert rows["cpu"]["packages"] == rows["cpu"]["toolchain"] == ""
    assert rows["cublas12"]["packages"] == rows["cublas12"]["toolchain"] == ""
    steps = _workflow("build.yml")["jobs"]["build"]["steps"]
    runs = {s.get("if"): s.get("run", "") for s in steps}
    assert "${{ matrix.packages }}" in runs["matrix.packages != ''"]
    assert "toolchain install ${{ matrix.toolchain }}" in runs["matrix.toolchain != ''"]
    # only a target that needs nothing but compilers is built in the older build environment
    assert rows["cpu"]["build_env"] == "recipes/build-env/Dockerfile"
    assert rows["vulkan"]["build_env"] == rows["cublas12"]["build_env"] == ""
    assert rows["metal"]["build_env"] == ""  # macOS
    build_step = next(s for s in steps if "buildtool build --target" in s.get("run", ""))
    assert "--build-env buildtool-build-env" in build_step["run"]
    assert "docker build -t buildtool-build-env -f ${{ matrix.build_env }}" in \
        runs["matrix.build_env != ''"]
    # no family is named in the build job's steps but the one needing its environment
    assert [s["if"] for s in steps if "matrix.family" in str(s.get("if"))] == [
        "matrix.family == 'sycl'"]


def test_wheel_jobs_emit_the_project_and_index_every_target(fake_tools: object) -> None:
    entries = _fed_by("wheels", "wheels", "github-wheels",
                      {"target", "runner", "cpu", "job", "archs", "wheels", "container"})
    wf = _workflow("build.yml")
    wheels = wf["jobs"]["wheels"]
    assert wheels["env"]["CIBW_ARCHS"] == "${{ matrix.archs }}"
    rows = {(e["target"], e["os"]): e for e in entries if e["job"] != "linux-aarch64"}
    # manylinux (per Linux platform), macOS arm64 for metal, Windows for cpu
    assert {("cpu", "linux"), ("cpu", "macos"), ("cpu", "windows"), ("metal", "macos"),
            ("cublas12", "linux"), ("vulkan", "linux")} <= set(rows)
    assert rows[("metal", "macos")]["runner"].startswith("macos")
    assert rows[("cpu", "windows")]["runner"].startswith("windows")
    assert rows[("hipblas", "linux")]["wheels"] == "container"
    assert rows[("hipblas", "linux")]["container"].startswith("rocm/")
    assert rows[("cpu", "linux")]["container"] == "" and rows[("cpu", "linux")]["cpu"] == \
        "all-variants"
    runs = "\n".join(s.get("run", "") for s in wheels["steps"])
    assert "--artifact wheel --emit wheel-project" in runs
    assert "cibuildwheel wheel-project" in runs
    index = wf["jobs"]["wheel-index"]
    assert index["needs"] == "wheels"
    assert any("buildtool index dist" in s.get("run", "") for s in index["steps"])


def test_workflows_validate_against_the_github_schema() -> None:
    import importlib.resources
    import json

    import jsonschema

    from buildtool.inputs import load_yaml

    schema_file = importlib.resources.files("check_jsonschema") / "builtin_schemas" / \
        "vendor" / "github-workflows.json"
    schema = json.loads(schema_file.read_text())
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        doc = load_yaml(path)  # keeps `on:` a string key, as GitHub reads it
        jsonschema.validate(doc.data, schema)


def test_ci_workflow_runs_the_ci_script() -> None:
    wf = _workflow("ci.yml")
    assert any(s.get("run") == "bash .ci/run" for s in wf["jobs"]["tests"]["steps"])


def test_images_are_built_in_one_bake_call_from_buildtools_bake_file() -> None:
    job = _workflow("build.yml")["jobs"]["images"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("buildtool bake --out build/bake" in r and "--platform ${{ matrix.platform }}"
               in r for r in runs)
    bake = next(s for s in job["steps"] if "docker buildx bake" in s.get("run", ""))
    assert bake["working-directory"] == "build/bake"
    assert any("buildtool smoke" in r and ".oci.tar" in r for r in runs)


def test_releases_go_through_the_gate_and_labs_report() -> None:
    job = _workflow("build.yml")["jobs"]["release"]
    assert set(job["needs"]) == {"build", "wheel-index", "images"}
    publish = next(s for s in job["steps"] if "buildtool publish" in s.get("run", ""))
    assert "--github" in publish["run"] and "--registry" in publish["run"]
    assert publish["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}  # env, not argv
    assert "--allow" not in publish["run"]  # exceptions are a person's decision
    lab = _workflow("lab.yml")["jobs"]
    runs = [s.get("run", "") for s in lab["run"]["steps"]]
    assert any("buildtool lab run artifacts" in r for r in runs)
    report = [s.get("run", "") for s in lab["report"]["steps"]]
    assert any("buildtool lab report" in r and "GITHUB_STEP_SUMMARY" in r for r in report)


def test_every_workflow_build_shares_the_compile_cache() -> None:
    """The cache URL comes from a secret (it may carry credentials) for every job; a pull
    request's builds read it and never write it."""
    from buildtool.toolchains import compile_cache

    for name in ("build.yml", "ci.yml"):
        env = _workflow(name)["env"]
        assert env[compile_cache.ENV_URL] == "${{ secrets.BUILDTOOL_COMPILE_CACHE }}"
        assert env[compile_cache.ENV_READ_ONLY] == \
            "${{ github.event_name == 'pull_request' }}"
