"""The parts of cog.yaml (and of the predictor's source) that cog's CLI reads at build time and
bakes into the image, read the same way here for source versions:

- `environment:` (a list of `NAME=value`) becomes the model process's environment (cog writes an
  `ENV` line). Names the platform relies on are refused, as cog refuses them (pkg/config/env.go),
  plus this platform's own (see ENV_DENY).
- `@concurrent(max=N)` / `@cog.concurrent(max=N)` on predict/run is read statically from the
  source, as cog's Go parser does; `concurrency.max` in cog.yaml wins when both are given
  (pkg/image/build.go: configWithDecoratorConcurrency). coglet itself reads neither: only
  COG_MAX_CONCURRENCY, which the runner sets from `effective_concurrency`.
- `build.system_packages` (apt packages) must be provided by the machine the runners run on: the
  host itself locally (checked with dpkg-query), the runner image when deployed (RUNNER_IMAGE_PACKAGES,
  installed by gpu_runner/Dockerfile). A push that needs others is refused with the missing names.

Standard library and yaml only: the CLI, the API and the runner all import it.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """cog.yaml asks for something this platform refuses; the message says what and why."""


# --- environment -----------------------------------------------------------------------------

# cog's own deny list (pkg/config/env.go at 0.22), then the variables this platform sets or reads in
# the model's process tree: coglet's settings (COG_*, PORT, WEBHOOK_AUTH_TOKEN, logging), cogplane's
# own, and the interpreter's (PYTHONHOME, PYTHONSAFEPATH would break the worker's imports).
ENV_DENY = (
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "R8_*",
    "REPLICATE_*",
    "LIBRARY_PATH",
    "CUDA_*",
    "NVIDIA_*",
    "NV_*",
    "PGET_*",
    "HF_ENDPOINT",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "KUBERNETES_*",
    "COG_*",
    "COGPLANE_*",
    "PORT",
    "WEBHOOK_AUTH_TOKEN",
    "RUST_LOG",
    "LOG_FORMAT",
    "PYTHONHOME",
    "PYTHONSAFEPATH",
    "LD_PRELOAD",
    "AWS_*",
    "ECS_*",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENV_VARS = 200
MAX_ENV_VALUE = 32 * 1024


def _denied(name: str) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in ENV_DENY)


def parse_environment(config: dict[str, Any] | None) -> dict[str, str]:
    """cog.yaml `environment:` as a dict, validated as cog validates it (ConfigError if not)."""
    raw = (config or {}).get("environment")
    if raw is None:
        return {}
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ConfigError("cog.yaml `environment` must be a list of NAME=value strings.")
    if len(raw) > MAX_ENV_VARS:
        raise ConfigError(f"cog.yaml `environment` has {len(raw)} entries; at most {MAX_ENV_VARS} are allowed.")
    env: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"environment variable {item[:100]!r} is not in the KEY=VALUE format")
        if not _ENV_NAME.match(name):
            raise ConfigError(
                f"environment variable {name[:100]!r}: a name is letters, digits and '_', not starting with a digit"
            )
        if _denied(name):
            raise ConfigError(
                f"environment variable {name!r} is not allowed: reserved for internal use "
                f"(reserved: {', '.join(ENV_DENY)})"
            )
        if name in env:
            raise ConfigError(f"environment variable {name!r} is already defined")
        if "\0" in value or len(value) > MAX_ENV_VALUE:
            raise ConfigError(
                f"environment variable {name!r}: the value must be under {MAX_ENV_VALUE} characters, without NUL"
            )
        env[name] = value
    return env


def environment_names(config: dict[str, Any] | None) -> list[str]:
    """The names (never the values) that cog.yaml sets, sorted; [] when there are none or they are invalid."""
    try:
        return sorted(parse_environment(config))
    except ConfigError:
        return []


# --- concurrency -----------------------------------------------------------------------------


def decorator_concurrency(model_dir: str | Path, ref: str | None) -> int | None:
    """`max` of an `@concurrent(max=N)` (or `@cog.concurrent`, or a bare `@concurrent`: 1) on the
    predictor's run()/predict(), read from the source without importing it. None if there is none
    (or the source cannot be read). ConfigError if max is not an integer literal >= 1, as cog says."""
    if not ref or not isinstance(ref, str):
        return None
    module_file, _, name = ref.partition(":")
    try:
        tree = ast.parse((Path(model_dir) / module_file).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    cog_modules, concurrent_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            cog_modules |= {a.asname or a.name for a in node.names if a.name == "cog"}
        elif isinstance(node, ast.ImportFrom) and node.module == "cog":
            concurrent_names |= {a.asname or a.name for a in node.names if a.name == "concurrent"}
    function = _target_function(tree, name)
    if function is None:
        return None
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        expr = call.func if call else decorator
        is_concurrent = (isinstance(expr, ast.Name) and expr.id in concurrent_names) or (
            isinstance(expr, ast.Attribute)
            and expr.attr == "concurrent"
            and isinstance(expr.value, ast.Name)
            and expr.value.id in cog_modules
        )
        if not is_concurrent:
            continue
        if call is None:
            return 1
        for keyword in call.keywords:
            if keyword.arg != "max":
                continue
            value = keyword.value
            if not (isinstance(value, ast.Constant) and type(value.value) is int):
                raise ConfigError("@concurrent max must be an integer literal")
            if value.value < 1:
                raise ConfigError("@concurrent max must be at least 1")
            return value.value
        return 1
    return None


def _target_function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    top = {
        node.name: node for node in tree.body if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    }
    candidates = [name] if name else ["Runner", "Predictor"]
    for candidate in candidates:
        node = top.get(candidate)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
        if isinstance(node, ast.ClassDef):
            methods = {m.name: m for m in node.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)}
            return methods.get("run") or methods.get("predict")
    return None


def config_concurrency(config: dict[str, Any] | None) -> int | None:
    """cog.yaml `concurrency.max` (None when absent)."""
    section = (config or {}).get("concurrency")
    if not isinstance(section, dict) or section.get("max") in (None, ""):
        return None
    value = section["max"]
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise ConfigError("cog.yaml `concurrency.max` must be a positive integer")
    if int(value) < 1:
        raise ConfigError("cog.yaml `concurrency.max` must be at least 1")
    return int(value)


def effective_concurrency(config: dict[str, Any] | None, model_dir: str | Path | None = None) -> int:
    """How many predictions one cog server runs at once: cog.yaml `concurrency.max`, else the
    decorator's max (read from model_dir), else 1."""
    from_config = config_concurrency(config)
    if from_config is not None:
        return from_config
    if model_dir is not None:
        config = config or {}
        found = decorator_concurrency(model_dir, config.get("run") or config.get("predict"))
        if found is not None:
            return found
    return 1


def with_decorator_concurrency(config: dict[str, Any], model_dir: str | Path) -> dict[str, Any]:
    """cog.yaml with the decorator's concurrency folded in (what cog writes in its run.cog.config label)."""
    if config_concurrency(config) is not None:
        return config
    found = decorator_concurrency(model_dir, config.get("run") or config.get("predict"))
    if found is None:
        return config
    return {**config, "concurrency": {"max": found}}


# --- system packages -------------------------------------------------------------------------

# What gpu_runner/Dockerfile installs for models (README: "System packages"). A test keeps the two equal.
RUNNER_IMAGE_PACKAGES = (
    "ffmpeg",
    "git",
    "libgl1",
    "libglib2.0-0",
    "libsm6",
    "libxext6",
    "libxrender1",
    "libgomp1",
    "libsndfile1",
    "curl",
    "wget",
    "zip",
    "unzip",
)
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:_-]+)?$")


def system_packages(config: dict[str, Any] | None) -> list[str]:
    """`build.system_packages` as bare Debian package names (an `=version` or `:arch` is dropped)."""
    build = (config or {}).get("build") or {}
    if not isinstance(build, dict):
        raise ConfigError("cog.yaml `build` must be a mapping")
    raw = build.get("system_packages") or []
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise ConfigError("cog.yaml `build.system_packages` must be a list of package names")
    names = []
    for package in raw:
        package = package.strip()
        if not _PACKAGE.match(package) or len(package) > 200:
            raise ConfigError(f"build.system_packages: {package[:100]!r} is not a Debian package name")
        name = re.split(r"[:=]", package, maxsplit=1)[0]
        if name not in names:
            names.append(name)
    return names


def missing_on_host(packages: Iterable[str]) -> list[str]:
    """The packages dpkg does not list as installed on this machine (all of them without dpkg-query)."""
    packages = list(packages)
    if not packages:
        return []
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return packages
    proc = subprocess.run(  # noqa: S603 - argv list (no shell): dpkg-query with package names as arguments
        [dpkg, "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    installed = set()
    for line in proc.stdout.splitlines():
        name, _, status = line.partition(" ")
        if status.strip() == "installed":
            installed.add(name.split(":", 1)[0])
    return [p for p in packages if p not in installed]


def missing_in_runner_image(packages: Iterable[str]) -> list[str]:
    return [p for p in packages if p not in RUNNER_IMAGE_PACKAGES]


HOST = (
    "on this machine, where its runners run",
    "Install {them} (on Debian/Ubuntu: `sudo apt-get install {names}`) and push again",
)
RUNNER_IMAGE = (
    "in the runner image, which provides only: " + ", ".join(RUNNER_IMAGE_PACKAGES),
    "Add {them} to gpu_runner/Dockerfile and RUNNER_IMAGE_PACKAGES and redeploy",
)


def check_system_packages(
    config: dict[str, Any] | None, missing: Callable[[list[str]], list[str]], where: tuple[str, str] = HOST
) -> None:
    """ConfigError naming the packages `missing` says the runners' machine lacks, and what to do."""
    absent = missing(system_packages(config))
    if absent:
        place, advice = where
        one = len(absent) == 1
        advice = advice.format(them="it" if one else "them", names=" ".join(absent))
        raise ConfigError(
            f"build.system_packages: {', '.join(absent)} {'is' if one else 'are'} not installed {place}. "
            f"{advice}, or build the model into an image with `cog build` and push that with "
            "`cogplane push --image`."
        )


def check_config(
    config: dict[str, Any] | None,
    model_dir: str | Path | None = None,
    *,
    missing_packages: Callable[[list[str]], list[str]] = missing_on_host,
    where: tuple[str, str] = HOST,
) -> None:
    """Everything above, at push: ConfigError with the first problem found."""
    parse_environment(config)
    effective_concurrency(config, model_dir)
    check_system_packages(config, missing_packages, where)
