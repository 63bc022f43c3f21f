"""Read build_matrix.yaml and recipes/*.yaml once, validated, into a :class:`Project`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from buildtool.config.model import CommonRecipe, Matrix, Recipe, TargetSpec
from buildtool.errors import ConfigError, UnknownTargetError
from buildtool.inputs import Doc, load_yaml
from buildtool.paths import MATRIX_FILE
from buildtool.schema import convert, suggest
from buildtool.source.vendor import LockSet, kept_lock_path
from buildtool.toolchains import compile_cache


@dataclass(frozen=True)
class Project:
    root: Path
    matrix_path: Path
    matrix: Matrix
    recipes: dict[str, Recipe]
    recipe_paths: dict[str, Path]
    common: CommonRecipe
    common_path: Path

    @property
    def lock_path(self) -> Path:
        return (self.matrix_path.parent / self.matrix.lock).resolve()

    def target(self, name: str) -> TargetSpec:
        try:
            return self.matrix.targets[name]
        except KeyError:
            near = suggest(name, self.matrix.targets)
            raise UnknownTargetError(
                f"unknown target '{name}'" + (f"; did you mean '{near}'?" if near else ""),
                hint="targets in build_matrix.yaml: " + ", ".join(self.matrix.targets),
            ) from None


def load_project(root: Path, matrix_path: Path | None = None) -> Project:
    matrix_path = matrix_path or root / MATRIX_FILE
    if not matrix_path.exists():
        raise ConfigError("build matrix not found", path=matrix_path,
                          hint="run buildtool from the project root, or pass --matrix PATH")
    doc = load_yaml(matrix_path)
    matrix: Matrix = convert(Matrix, doc.data, doc)
    _check_versions(matrix, matrix_path, doc)
    if matrix.compile_cache is not None:  # a URL ccache can use, without credentials
        try:
            compile_cache.parse(matrix.compile_cache.url, "compile-cache.url", error=ConfigError,
                                allow_credentials=False)
        except ConfigError as exc:
            raise ConfigError(exc.message, path=matrix_path,
                              line=doc.line(("compile-cache", "url")), hint=exc.hint) from None
    recipes_dir = matrix_path.parent / "recipes"
    common_path = recipes_dir / "common.yaml"
    if not common_path.is_file():
        raise ConfigError("recipes/common.yaml not found", path=common_path,
                          hint="the recipes directory belongs beside build_matrix.yaml")
    common_doc = load_yaml(common_path)
    common: CommonRecipe = convert(CommonRecipe, common_doc.data, common_doc)
    available = sorted(p.stem for p in recipes_dir.glob("*.yaml") if p.stem != "common")
    recipes: dict[str, Recipe] = {}
    paths: dict[str, Path] = {}
    for name, spec in matrix.targets.items():
        if spec.recipe in recipes:
            continue
        path = recipes_dir / f"{spec.recipe}.yaml"
        if not path.is_file():
            near = suggest(spec.recipe, available)
            raise ConfigError(
                f"targets.{name}.recipe: no recipe '{spec.recipe}' in {recipes_dir}",
                path=matrix_path, line=doc.line(("targets", name, "recipe")),
                hint=f"did you mean '{near}'?" if near else
                f"available recipes: {', '.join(available)}")
        recipes[spec.recipe] = _load_recipe(path)
        paths[spec.recipe] = path
    return Project(root=root, matrix_path=matrix_path, matrix=matrix, recipes=recipes,
                   recipe_paths=paths, common=common, common_path=common_path)


def _check_versions(matrix: Matrix, matrix_path: Path, doc: Doc) -> None:
    """Each llama.cpp version the matrix names has a lock in the set (the default lock or one
    kept beside it), or the matrix is refused at its line."""
    named = [(("defaults", "llama-cpp"), matrix.defaults.llama_cpp),
             *((("targets", name, "llama-cpp"), spec.llama_cpp)
               for name, spec in matrix.targets.items())]
    wanted = [(keys, version) for keys, version in named if version is not None]
    if not wanted:
        return
    locks = LockSet((matrix_path.parent / matrix.lock).resolve())
    available = locks.versions()
    for keys, version in wanted:
        if version not in available:
            raise ConfigError(
                f"{'.'.join(keys)}: no lock for llama.cpp {version} beside {matrix.lock} "
                f"(kept versions: {', '.join(available)})", path=matrix_path,
                line=doc.line(keys),
                hint=f"`buildtool vendor lock {version} --keep` writes "
                     f"{kept_lock_path(locks.default_path, version).name}")


def _load_recipe(path: Path) -> Recipe:
    rdoc = load_yaml(path)
    recipe: Recipe = convert(Recipe, rdoc.data, rdoc)  # its family: one in the registry
    return recipe
