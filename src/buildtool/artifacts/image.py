"""Container images: the build context, build arguments, tags and bake file of a target.

An image is built from ``recipes/docker/<family>.Dockerfile`` (multi-stage: the build stage
compiles the pinned llama.cpp through recipes/cmake, the runtime stage ships what the
"buildtool" install component names). The CMake configuration is not written in the
Dockerfile: the build context carries ``targets/<target>/defines.cmake``, the target's
resolved definitions — ``plan.cmake_defines``, the list the tarball and the wheel are
configured with — minus what only holds on this machine, and CMake loads it as its initial
cache. One context serves any number of targets (``buildtool bake``): the CMake project and
the llama.cpp tree once, a ``targets/<name>/`` directory per target.

Build arguments (TGI-style): BUILD_IMAGE and RUNTIME_IMAGE (the base images, from the recipe
or the target), LLAMA_CPP_VERSION / LLAMA_CPP_COMMIT, BUILDTOOL_TARGET, and per family the
toolkit version (CUDA_VERSION, ROCM_VERSION, ONEAPI_VERSION) and GPU architectures
(CUDA_ARCHITECTURES, AMDGPU_TARGETS; empty means "as in defines.cmake").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtool import backends, records
from buildtool.config.plan import CMAKE_PROJECT_FILES, BuildPlan, portable_defines
from buildtool.config.resolve import ResolvedTarget
from buildtool.errors import UsageError
from buildtool.paths import source_date_epoch
from buildtool.records import ImageRecord, Manifest
from buildtool.source.vendor import Lock, copy_build_tree

DOCKER_DIR = Path("recipes") / "docker"
REPOSITORY = "llama.cpp"
LOCAL_REGISTRY = "localhost"
PROGRAMS_DIR = "/opt/llama.cpp"  # where the runtime stage puts programs, libraries, manifest
# buildtool's platform names → OCI platform names
OCI_PLATFORMS = {"linux-x86_64": "linux/amd64", "linux-aarch64": "linux/arm64"}
# the Dockerfile sets these itself: where the install component goes inside the build stage
DOCKERFILE_OWNS = ("BUILDTOOL_DESTINATION",)
# build arguments that change with every build and only feed labels: not part of the key
VOLATILE_ARGS = ("CREATED", "BUILD_KEY")


def require_image(rt: ResolvedTarget) -> None:
    """Refuse targets that have no container image (metal; recipes without docker)."""
    if rt.dockerfile is None or rt.build_image is None or rt.runtime_image is None:
        raise UsageError(f"target {rt.name} has no container image (recipes/"
                         f"{rt.recipe_name}.yaml names no docker section)",
                         hint="add a docker section (a Dockerfile and base images) to the recipe")
    if not any(p in OCI_PLATFORMS for p in rt.platforms):
        raise UsageError(f"target {rt.name} has no Linux platform; container images are "
                         "Linux images")


def tag_name(rt: ResolvedTarget) -> str:
    """``cpu-b11312``, ``cpu-host-x86-64-v4-b11312``, ``cublas12-b11312-r1``."""
    name = f"{rt.name}-{rt.variant}" if rt.variant else rt.name
    name += f"-b{rt.build_number}" + (f"-r{rt.revision}" if rt.revision else "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:128]


def tags(rt: ResolvedTarget, registry: str = LOCAL_REGISTRY) -> list[str]:
    """The version tag first, then the moving one (``:cpu``) for portable builds."""
    out = [f"{registry}/{REPOSITORY}:{tag_name(rt)}"]
    if not rt.variant:
        out.append(f"{registry}/{REPOSITORY}:{rt.name}")
    return out


def archive_name(plan: BuildPlan) -> str:
    return f"{plan.artifact_name}.oci.tar"


def created_at() -> str:
    """RFC 3339; SOURCE_DATE_EPOCH when set (reproducible builds)."""
    when = source_date_epoch() or datetime.now(UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def build_args(plan: BuildPlan, lock: Lock, *, created: str | None = None,
               overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Dockerfile's build arguments for this target (``overrides``: --build-arg)."""
    rt = plan.target
    require_image(rt)
    args = {"BUILD_IMAGE": str(rt.build_image), "RUNTIME_IMAGE": str(rt.runtime_image),
            "BUILDTOOL_TARGET": rt.name, "LLAMA_CPP_VERSION": lock.version,
            "LLAMA_CPP_COMMIT": lock.commit}
    args.update(backends.family(rt.family).image_args(rt.toolkit, rt.define))
    args["BUILD_KEY"] = plan.key
    args["CREATED"] = created or created_at()
    for key, value in (overrides or {}).items():
        args[key] = value
    return args


def dockerfile(root: Path, rt: ResolvedTarget) -> Path:
    require_image(rt)
    return root / DOCKER_DIR / str(rt.dockerfile)


def dockerfile_sha256(root: Path, rt: ResolvedTarget) -> str:
    return hashlib.sha256(dockerfile(root, rt).read_bytes()).hexdigest()


def image_key(plan: BuildPlan, root: Path, args: Mapping[str, str]) -> str:
    """What determines the image: the build key, the Dockerfile, the build arguments."""
    payload = {"build": plan.key, "kind": "image",
               "dockerfile": dockerfile_sha256(root, plan.target),
               "args": {k: v for k, v in sorted(args.items()) if k not in VOLATILE_ARGS}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cmake_string(value: str) -> str:
    """A CMake quoted argument: no variable references, no escapes left to interpret."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def defines_cmake(plan: BuildPlan) -> str:
    """targets/<target>/defines.cmake: the plan's definitions as CMake's initial cache."""
    rt = plan.target
    lines = [f"# {rt.name}: the resolved CMake definitions (`buildtool plan --target {rt.name}`),",
             "# loaded with `cmake -C` in the image's build stage. Written by buildtool.", ""]
    for key, value in portable_defines(plan):
        if key in DOCKERFILE_OWNS:
            continue
        origin = rt.origins.get(f"-D{key}", "recipes/cmake")
        lines.append(f"set({key} {cmake_string(value)} CACHE STRING {cmake_string(origin)})")
    return "\n".join(lines) + "\n"


def image_manifest(plan: BuildPlan, base: Manifest, args: Mapping[str, str],
                   tag_list: Sequence[str], root: Path) -> Manifest:
    """The manifest.json the image carries in /opt/llama.cpp (no toolchain: this machine's
    compilers did not build it)."""
    rt = plan.target
    return dataclasses.replace(
        base, kind="image", artifact=plan.artifact_name, files=None, toolchain=None,
        image=ImageRecord(tags=tuple(tag_list), dockerfile=f"{DOCKER_DIR}/{rt.dockerfile}",
                          dockerfile_sha256=dockerfile_sha256(root, rt),
                          build_args=dict(args), build_image=args.get("BUILD_IMAGE"),
                          runtime_image=args.get("RUNTIME_IMAGE"),
                          platform=OCI_PLATFORMS.get(rt.platform, rt.platform),
                          programs_dir=PROGRAMS_DIR))


@dataclass(frozen=True, kw_only=True)
class ContextTarget:
    plan: BuildPlan
    manifest: Manifest


def render_context(targets: Sequence[ContextTarget], dest: Path, *, root: Path) -> Path:
    """Write one build context for the given targets into ``dest`` (replaced if present)."""
    if not targets:
        raise UsageError("no target has a container image")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    first = targets[0].plan
    for name in CMAKE_PROJECT_FILES:
        shutil.copy2(first.project_dir / name, dest / name)
    copy_build_tree(first.source_dir, dest / "llama.cpp")
    (dest / "docker").mkdir()
    for item in targets:
        rt = item.plan.target
        shutil.copy2(dockerfile(root, rt), dest / "docker" / str(rt.dockerfile))
        tdir = dest / "targets" / rt.name
        tdir.mkdir(parents=True)
        (tdir / "defines.cmake").write_text(defines_cmake(item.plan))
        (tdir / "manifest.json").write_text(json.dumps(records.to_json(item.manifest),
                                                       indent=2) + "\n")
    # what buildx writes beside the bake file is no part of the context; older buildx
    # versions do not create the output directory themselves
    (dest / ".dockerignore").write_text(f"docker-bake.hcl\n*.oci.tar\n{OUTPUT_DIR}/\n.cache/\n"
                                        ".buildtool-owner\n")
    (dest / OUTPUT_DIR).mkdir()
    return dest


# ------------------------------------------------------------------------------ bake

CACHE_KINDS = ("gha", "registry", "local", "none")
CONTEXT = "image-build-context"  # what a directory `bake --out` / `--emit` writes holds
OUTPUT_DIR = "images"  # the bake file's default OUTPUT_DIR, beside it
CACHE_DIR = ".cache/buildx"


def _hcl(value: Any) -> str:
    """An HCL value: JSON strings/lists are HCL, maps use `key = value`; `${` is escaped
    unless the value is a deliberate variable reference (a str subclass below)."""
    if isinstance(value, Var):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value.replace("${", "$${"))
    if isinstance(value, Mapping):
        body = "".join(f"\n    {k} = {_hcl(v)}" for k, v in value.items())
        return "{" + body + "\n  }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    return json.dumps(value)


class Var(str):
    """A string holding bake variable references (``${REGISTRY}``), written as is."""


def cache_settings(kind: str, target: str) -> tuple[list[str], list[str]]:
    """cache-from / cache-to for one bake target."""
    if kind == "gha":
        scope = f"buildtool-{target}"
        return [f"type=gha,scope={scope}"], [f"type=gha,scope={scope},mode=max"]
    if kind == "registry":
        ref = Var(f"${{REGISTRY}}/{REPOSITORY}:buildcache-{target}")
        return [Var(f"type=registry,ref={ref}")], [Var(f"type=registry,ref={ref},mode=max")]
    if kind == "local":
        path = Var(f"${{CACHE_DIR}}/{target}")
        return [Var(f"type=local,src={path}")], [Var(f"type=local,dest={path},mode=max")]
    if kind == "none":
        return [], []
    raise UsageError(f"unknown cache kind '{kind}'", hint="one of: " + ", ".join(CACHE_KINDS))


def bake_file(items: Sequence[tuple[BuildPlan, Mapping[str, str]]], *, cache: str,
              lock: Lock) -> str:
    """docker-bake.hcl for the given (plan, build arguments), context = its directory."""
    names = [plan.target.name for plan, _ in items]
    out = [
        f"# llama.cpp {lock.version} ({lock.short_commit}) images for {', '.join(names)}.",
        "# Written by `buildtool bake`; build them all with `docker buildx bake` in this",
        "# directory (REGISTRY, OUTPUT_DIR and CACHE_DIR can be set in the environment).", "",
        'variable "REGISTRY" {\n  default = "localhost"\n}',
        f'variable "OUTPUT_DIR" {{\n  default = "{OUTPUT_DIR}"\n}}',
        f'variable "CACHE_DIR" {{\n  default = "{CACHE_DIR}"\n}}', "",
        'group "default" {\n  targets = ' + _hcl(names) + "\n}",
    ]
    for plan, args in items:
        rt = plan.target
        cache_from, cache_to = cache_settings(cache, rt.name)
        tag_list = [Var(t.replace(f"{LOCAL_REGISTRY}/", "${REGISTRY}/", 1)) for t in tags(rt)]
        archive = Var(f"type=oci,dest=${{OUTPUT_DIR}}/{archive_name(plan)}")
        fields: list[tuple[str, Any]] = [
            ("context", "."), ("dockerfile", f"docker/{rt.dockerfile}"),
            ("args", {**args, "CREATED": Var("${timestamp()}")}),
            # one platform: the definitions were resolved for it (CPU variants differ)
            ("tags", tag_list), ("platforms", [OCI_PLATFORMS[rt.platform]]),
            ("cache-from", cache_from), ("cache-to", cache_to),
            ("output", [archive]),
        ]
        body = "".join(f"\n  {k} = {_hcl(v)}" for k, v in fields)
        out += ["", f'target "{rt.name}" {{' + body + "\n}"]
    return "\n".join(out) + "\n"
