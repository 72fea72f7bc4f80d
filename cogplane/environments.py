"""Python environments for source model versions, built from their cog.yaml and cached by content.

A source version is a model folder (cog.yaml, predict.py, files). Before its cog server can start,
it needs a virtual environment holding the model's packages plus the cog SDK that runs it:

- `build.python_packages` (a list of requirement strings) and/or `build.python_requirements` (a
  requirements file inside the model folder) are installed with ONE install command, together with
  `cog==COG_VERSION`. One command matters: `torch==2.13.0` must be resolved together with the
  packages that depend on it, or the installer may pick another (multi-GB) torch build.
- The installer is uv (`uv venv` + `uv pip install --python`) where the `uv` binary exists (it is
  a runtime dependency of cogplane), else pip. `COGPLANE_INSTALLER=auto|uv|pip` chooses (auto: uv
  if available). uv's cache is `<cache_root>/.uv-cache`, shared by every environment of the cache
  (same file system, so uv hard-links files from it: a torch environment whose wheels are cached
  builds in seconds). uv does not read pip's configuration, so the index settings pip would use
  (`pip config list`: index-url, extra-index-url, find-links, constraint, no-index, from pip.conf
  files and PIP_* variables) are passed to uv as flags, with pip's rule for several indexes
  (the best version across all of them: `--index-strategy unsafe-best-match`); UV_* variables
  apply as usual, configuration files do not (`--no-config`: a model folder's pyproject.toml or
  uv.toml must not steer the build).
- Any `cog`/`coglet` pin in the model's list is replaced by ours: the platform drives the cog
  server of a known version (see docs/cog-contract.md).
- The environment lives at `<cache_root>/<key>`, where key = sha256 of (python version, sorted
  packages, requirements file content, cog version). Versions with the same dependencies share it;
  every model without dependencies shares one base environment holding only cog. It survives
  runner restarts.
- Builds happen in a temporary folder next to the final one and are renamed into place once
  complete (with a `.ready` marker inside), under an exclusive `fcntl` lock per key, so two runners
  that race for the same key build it once and a crashed build never leaves a half environment
  where the next runner would take it.

Virtual environments are not relocatable as-is: pip and uv write the absolute interpreter path
into the scripts they install in `bin/` (and `bin/activate*` name the folder). Before the rename,
those references to the temporary folder are rewritten to the final path (each into a new file:
an installed file may be a hard link into uv's cache, which must never change).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cogplane.processes import pdeathsig_preexec

COG_VERSION = "0.23.1"
READY_MARKER = ".ready"
METADATA_FILE = "cogplane-env.json"
BUILD_LOG = "cogplane-build.log"  # the output of the build that made the environment
KEY_SCHEMA = 1  # bump to invalidate every cached environment (a change in how they are built)

_PIP_FLAGS = ["--no-input", "--disable-pip-version-check", "--progress-bar", "off"]
_COG_NAMES = {"cog", "coglet"}
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

LogFn = Callable[[str], None]


INSTALLERS = ("auto", "uv", "pip")
UV_CACHE = ".uv-cache"  # inside the cache root: on the environments' file system (hard links)


class EnvironmentBuildError(Exception):
    """The installer (or venv) failed. `logs` holds the complete build output."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.logs = logs


@dataclass(frozen=True)
class EnvironmentSpec:
    """What goes into an environment: everything the cache key is made of."""

    python_version: str  # major.minor of the interpreter actually used, e.g. "3.11"
    python_executable: str
    packages: tuple[str, ...]  # sorted, without cog/coglet
    requirements: str  # content of build.python_requirements ("" if none)
    requirements_file: Path | None
    cog_version: str = COG_VERSION

    @property
    def key(self) -> str:
        payload = json.dumps(
            {
                "schema": KEY_SCHEMA,
                "python": self.python_version,
                "packages": list(self.packages),
                "requirements": self.requirements,
                "cog": self.cog_version,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _requirement_name(requirement: str) -> str | None:
    match = _NAME_RE.match(requirement)
    return match.group(1).lower().replace("_", "-") if match else None


def find_python(version: str | None, on_log: LogFn = lambda s: None) -> tuple[str, str]:
    """Return (executable, "major.minor") for the Python a cog.yaml asks for.

    The runner's own interpreter is used when it matches (or when none is asked for); otherwise
    `pythonX.Y` on PATH. If that does not exist either, the runner's interpreter is used and a
    warning goes to the build log: the cache key then records the version really used.
    """
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    wanted = str(version).strip() if version is not None else ""
    if not wanted or wanted == own or wanted.startswith(own + "."):
        return sys.executable, own
    candidate = shutil.which(f"python{wanted}")
    if candidate:
        probe = subprocess.run(  # noqa: S603 - argv list (no shell): a python found on PATH, a fixed probe
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip():
            return candidate, probe.stdout.strip()
    on_log(f"cogplane: python {wanted} is not installed here; using python {own} instead")
    return sys.executable, own


def environment_spec(config: dict, model_dir: Path, on_log: LogFn = lambda s: None) -> EnvironmentSpec:
    """Read the environment-relevant parts of a parsed cog.yaml."""
    build = (config or {}).get("build") or {}
    packages: list[str] = []
    for raw in build.get("python_packages") or []:
        requirement = str(raw).strip()
        if not requirement:
            continue
        if _requirement_name(requirement) in _COG_NAMES:
            if requirement.replace(" ", "") != f"cog=={COG_VERSION}":
                on_log(f"cogplane: ignoring {requirement!r}: models run on cog=={COG_VERSION}")
            continue
        packages.append(requirement)
    requirements = ""
    requirements_file: Path | None = None
    if build.get("python_requirements"):
        requirements_file = (Path(model_dir) / str(build["python_requirements"])).resolve()
        if not requirements_file.is_relative_to(Path(model_dir).resolve()):
            raise EnvironmentBuildError(f"python_requirements must be inside the model: {requirements_file}")
        if not requirements_file.is_file():
            raise EnvironmentBuildError(f"python_requirements file not found: {build['python_requirements']}")
        requirements = requirements_file.read_text()
    # build.system_packages were checked at push against what the runners' machine provides
    if build.get("run"):
        on_log("cogplane: build.run is not applied to source versions; ignoring it")
    executable, python_version = find_python(build.get("python_version"), on_log)
    return EnvironmentSpec(
        python_version=python_version,
        python_executable=executable,
        packages=tuple(sorted(set(packages))),
        requirements=requirements,
        requirements_file=requirements_file,
    )


def environment_key(config: dict, model_dir: Path) -> str:
    return environment_spec(config, model_dir).key


def is_ready(env_dir: Path) -> bool:
    return (Path(env_dir) / READY_MARKER).is_file()


def ensure_environment(
    config: dict,
    model_dir: Path,
    cache_root: Path,
    on_log: LogFn = lambda s: None,
    *,
    timeout: float | None = None,
    on_build_start: Callable[[], None] | None = None,
    installer: str | None = None,
) -> Path:
    """Return the root of a ready environment for this cog.yaml, building it if needed.

    `env/bin/python` runs the model; `env/bin` must come first on the cog server's PATH. Build
    output (the installer's, line by line) goes to `on_log`, and is kept in the environment as
    BUILD_LOG. `on_build_start` is called when a build really starts (not for a cached environment).
    `installer`: "uv", "pip" or "auto" (settings.installer; default auto). Raises
    EnvironmentBuildError if the build fails (or takes longer than `timeout` seconds).
    """
    model_dir = Path(model_dir)
    cache_root = Path(cache_root)
    spec = environment_spec(config, model_dir, on_log)
    final = cache_root / spec.key
    if is_ready(final):
        _touch(final / READY_MARKER)
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_root / ".locks" / f"{spec.key}.lock", on_log):
        if is_ready(final):  # another runner built it while we waited
            return final
        if final.exists():  # not ours to reuse: neither complete nor renamed by a build
            shutil.rmtree(final, ignore_errors=True)
        if on_build_start is not None:
            on_build_start()
        chosen = choose_installer(installer)
        started = time.monotonic()
        try:
            _build(spec, model_dir, cache_root, final, on_log, timeout, chosen)
        except EnvironmentBuildError as exc:
            # auto: where uv cannot build what pip can (a legacy sdist, a pip-only option), pip gets
            # its turn with what is left of the deadline; an explicit uv (COGPLANE_INSTALLER=uv) fails.
            explicit = (installer or "auto").strip().lower() == "uv"
            left = None if timeout is None else timeout - (time.monotonic() - started)
            if chosen != "uv" or explicit or exc.message.endswith("timed out") or (left is not None and left <= 0):
                raise
            on_log(f"cogplane: uv could not build this environment ({exc.message[:200]}); building it with pip")
            _build(spec, model_dir, cache_root, final, on_log, left, "pip")
    return final


def choose_installer(wanted: str | None = None) -> str:
    """ "uv" or "pip": `wanted` (settings.installer, COGPLANE_INSTALLER; default auto = uv where its
    binary exists)."""
    choice = (wanted or "auto").strip().lower()
    if choice not in INSTALLERS:
        raise EnvironmentBuildError(f"COGPLANE_INSTALLER must be one of {', '.join(INSTALLERS)}, not {choice!r}")
    if choice == "pip":
        return "pip"
    if uv_binary() is not None:
        return "uv"
    if choice == "uv":
        raise EnvironmentBuildError("COGPLANE_INSTALLER=uv but no uv binary was found (pip install uv)")
    return "pip"


@functools.cache
def uv_binary() -> str | None:
    """The uv next to this interpreter (the `uv` package cogplane depends on), else uv on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


@functools.cache
def pip_index_options() -> tuple[tuple[str, ...], bool]:
    """(uv flags, whether extra indexes were named) from the configuration pip would use here.

    Read with `pip config list` (pip.conf files and PIP_* variables; PIP_* wins, then `install.`,
    then `global.`), so that uv installs from the same indexes, local wheel folders and constraints.
    """
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_child_env(),
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (), False
    rank = {":env:": 0, "install": 1, "global": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.strip().rpartition(".")
        if not sep or section not in rank:
            continue
        value = value.strip().strip("'\"")
        if name not in found or rank[section] < found[name][0]:
            found[name] = (rank[section], value)
    flags: list[str] = []
    for name, flag in (
        ("index-url", "--index-url"),
        ("extra-index-url", "--extra-index-url"),
        ("find-links", "--find-links"),
        ("constraint", "--constraint"),
    ):
        for item in found.get(name, (0, ""))[1].split():
            flags += [flag, item]
    if found.get("no-index", (0, ""))[1].lower() in ("1", "true", "yes", "on"):
        flags.append("--no-index")
    return tuple(flags), "extra-index-url" in found


def _build(
    spec: EnvironmentSpec,
    model_dir: Path,
    cache_root: Path,
    final: Path,
    on_log: LogFn,
    timeout: float | None,
    installer: str = "pip",
) -> None:
    building = cache_root / ".building"
    building.mkdir(parents=True, exist_ok=True)
    for stale in building.glob(f"{spec.key}-*"):  # left by a runner that died mid-build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = building / f"{spec.key}-{os.getpid()}"
    logs: list[str] = []

    def log(line: str) -> None:
        logs.append(line)
        on_log(line)

    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    try:
        log(f"cogplane: building environment {spec.key[:12]} (python {spec.python_version}, {installer})")
        wanted = [*spec.packages, f"cog=={spec.cog_version}"]
        if spec.requirements_file is not None:
            wanted = ["-r", str(spec.requirements_file), *wanted]
        if installer == "uv":
            uv = uv_binary() or "uv"
            cache = ["--cache-dir", str(cache_root / UV_CACHE)] if not os.environ.get("UV_CACHE_DIR") else []
            # --no-config: no uv.toml/pyproject.toml from the model folder (the cwd) steers the build
            venv = [uv, "venv", "--no-config", "--no-project", "--python", spec.python_executable, str(tmp)]
            _run(venv, model_dir, log, logs, deadline)
            flags, extra_indexes = pip_index_options()
            install = [uv, "pip", "install", "--no-config", "--python", str(tmp / "bin" / "python"), *cache, *flags]
            if extra_indexes and not os.environ.get("UV_INDEX_STRATEGY"):
                install += ["--index-strategy", "unsafe-best-match"]  # pip's rule across indexes
            install += wanted
        else:
            host_pip = _host_pip_supports_python_option()
            venv = [spec.python_executable, "-m", "venv", *(["--without-pip"] if host_pip else []), str(tmp)]
            _run(venv, model_dir, log, logs, deadline)
            if host_pip:  # 1 s instead of 4 s for a cog-only env, and 22 MB less per env: no pip inside
                install = [sys.executable, "-m", "pip", "--python", str(tmp / "bin" / "python"), "install"]
            else:
                install = [str(tmp / "bin" / "python"), "-m", "pip", "install"]
            install += [*_PIP_FLAGS, *wanted]
        log("cogplane: " + " ".join([Path(install[0]).name, *install[1:]]))
        _run(install, model_dir, log, logs, deadline)
        _relocate(tmp, final)
        seconds = round(time.monotonic() - started, 2)
        metadata = {
            "key": spec.key,
            "python": spec.python_version,
            "packages": list(spec.packages),
            "requirements": spec.requirements,
            "cog": spec.cog_version,
            "installer": installer,
            "built_at": time.time(),
            "build_seconds": seconds,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        log(f"cogplane: environment {spec.key[:12]} ready in {seconds} s")
        (tmp / BUILD_LOG).write_text("\n".join(logs) + "\n")
        (tmp / READY_MARKER).write_text(f"{spec.key}\n")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, log: LogFn, logs: list[str], deadline: float | None) -> None:
    env = _child_env()
    if os.path.basename(cmd[0]) == "uv":
        env.setdefault("NO_COLOR", "1")
        env.setdefault("UV_NO_PROGRESS", "1")
    proc = subprocess.Popen(  # noqa: S603 - argv list (no shell): venv/pip/uv commands built here
        cmd,
        cwd=cwd,  # relative paths in a requirements file are relative to the model folder
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,
        preexec_fn=pdeathsig_preexec(),  # a runner killed mid-build leaves no pip behind
    )
    timed_out = threading.Event()

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def on_deadline() -> None:
        timed_out.set()
        kill_group()

    timer = None
    if deadline is not None:
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), on_deadline)
        timer.daemon = True
        timer.start()
    try:
        for line in proc.stdout or ():  # stdout=PIPE: always there
            log(line.rstrip("\n"))
        code = proc.wait()
    except BaseException:
        kill_group()
        proc.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if timed_out.is_set():
        raise EnvironmentBuildError("environment build timed out", "\n".join(logs))
    if code != 0:
        uv = os.path.basename(cmd[0]) == "uv"
        if "install" in cmd:
            what = "uv pip install" if uv else "pip install"
        else:
            what = "uv venv" if uv else "python -m venv"
        tail = next((line for line in reversed(logs) if line.strip()), "")
        raise EnvironmentBuildError(f"{what} failed (exit {code}): {tail}", "\n".join(logs))


@functools.cache
def _host_pip_supports_python_option() -> bool:
    """True if the runner's own pip can install into another interpreter (`pip --python`, pip >= 22.3)."""
    try:
        import pip
    except ImportError:
        return False
    parts = [int(p) if p.isdigit() else 0 for p in pip.__version__.split(".")[:2]]
    return tuple(parts) >= (22, 3)


def _relocate(tmp: Path, final: Path) -> None:
    """Rewrite references to the build folder (bin/ shebangs, activate, pyvenv.cfg) to the final path."""
    old, new = str(tmp).encode(), str(final).encode()
    for path in [*(tmp / "bin").iterdir(), tmp / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old not in data or b"\0" in data[:4096]:
            continue
        mode = path.stat().st_mode
        fresh = path.with_name(path.name + ".cogplane-relocate")
        fresh.write_bytes(data.replace(old, new))
        fresh.chmod(mode)
        os.replace(fresh, path)  # a new inode: a hard link into uv's cache stays untouched


@contextlib.contextmanager
def _exclusive_lock(path: Path, on_log: LogFn) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_log("cogplane: waiting for another runner that is building the same environment")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _touch(path: Path) -> None:
    """Record the last use (the marker's mtime), for a future clean-up of unused environments."""
    with contextlib.suppress(OSError):
        os.utime(path)


def build_record(env_dir: Path) -> tuple[dict, str]:
    """(metadata, build log) of a ready environment ({} and "" where unknown, e.g. an older build)."""
    try:
        metadata = json.loads((Path(env_dir) / METADATA_FILE).read_text())
    except (OSError, ValueError):
        metadata = {}
    try:
        log = (Path(env_dir) / BUILD_LOG).read_text(errors="replace")
    except OSError:
        log = ""
    return metadata, log


def environment_size(env_dir: Path) -> int:
    """Bytes used by an environment (files only, symlinks not followed)."""
    total = 0
    for root, _dirs, files in os.walk(env_dir):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def main(argv: list[str] | None = None) -> int:
    """`python -m cogplane.environments MODEL_DIR CACHE_ROOT`: build (or find) a model's environment."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("cache_root", type=Path)
    args = parser.parse_args(argv)
    config = yaml.safe_load((args.model_dir / "cog.yaml").read_text()) or {}
    started = time.monotonic()
    try:
        env = ensure_environment(config, args.model_dir, args.cache_root, on_log=print)
    except EnvironmentBuildError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"{env}  ({time.monotonic() - started:.2f} s, {environment_size(env) / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
