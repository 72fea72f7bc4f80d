"""cog.yaml `environment:`, `@concurrent(max=N)` and `build.system_packages`, read as cog's CLI reads them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cogplane import cogconfig
from cogplane.cogconfig import (
    ConfigError,
    check_config,
    decorator_concurrency,
    effective_concurrency,
    environment_names,
    missing_in_runner_image,
    missing_on_host,
    parse_environment,
    system_packages,
    with_decorator_concurrency,
)

REPO = Path(__file__).resolve().parents[2]


# --- environment -----------------------------------------------------------------------------


def test_environment_is_parsed_like_cog():
    config = {"environment": ["NAME=michael", "TEST_VAR=test_value", "EMPTY=", "EQ=a=b"]}
    assert parse_environment(config) == {"NAME": "michael", "TEST_VAR": "test_value", "EMPTY": "", "EQ": "a=b"}
    assert environment_names(config) == ["EMPTY", "EQ", "NAME", "TEST_VAR"]
    assert parse_environment({}) == {} and parse_environment(None) == {}


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "PYTHONPATH",
        "LD_LIBRARY_PATH",
        "VIRTUAL_ENV",
        "CUDA_HOME",
        "NVIDIA_VISIBLE_DEVICES",
        "REPLICATE_API_TOKEN",
        "R8_X",
        "COG_MAX_CONCURRENCY",
        "COG_WEIGHTS",
        "COGPLANE_TOKEN",
        "PORT",
        "PYTHONHOME",
        "LD_PRELOAD",
        "AWS_SECRET_ACCESS_KEY",
        "KUBERNETES_SERVICE_HOST",
        "WEBHOOK_AUTH_TOKEN",
    ],
)
def test_platform_names_are_refused(name):
    with pytest.raises(ConfigError, match=f"{name}.*reserved for internal use"):
        parse_environment({"environment": [f"{name}=x"]})
    assert environment_names({"environment": [f"{name}=x"]}) == []


@pytest.mark.parametrize(
    "environment, message",
    [
        ("A=1", "must be a list"),
        ([1], "must be a list"),
        (["NOVALUE"], "KEY=VALUE"),
        (["=x"], "KEY=VALUE"),
        (["1A=x"], "a name is letters"),
        (["A-B=x"], "a name is letters"),
        (["A=1", "A=2"], "already defined"),
        (["A=\0"], "without NUL"),
    ],
)
def test_bad_environment_is_refused(environment, message):
    with pytest.raises(ConfigError, match=message):
        parse_environment({"environment": environment})


# --- concurrency -----------------------------------------------------------------------------


def _model(tmp_path: Path, source: str, ref: str = "predict.py:Predictor") -> tuple[Path, dict]:
    (tmp_path / "predict.py").write_text(source)
    config = {"predict": ref}
    (tmp_path / "cog.yaml").write_text(f"predict: {ref}\n")
    return tmp_path, config


HELLO_CONCURRENCY = """
import asyncio
from cog import BasePredictor, concurrent

class Predictor(BasePredictor):
    @concurrent(max=4)
    async def predict(self, s: float = 1.0) -> str:
        await asyncio.sleep(s)
        return "done"
"""


def test_decorator_max_is_read_from_the_source(tmp_path):
    folder, config = _model(tmp_path, HELLO_CONCURRENCY)
    assert decorator_concurrency(folder, "predict.py:Predictor") == 4
    assert effective_concurrency(config, folder) == 4
    assert with_decorator_concurrency(config, folder) == {**config, "concurrency": {"max": 4}}


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "import cog\nclass Predictor(cog.BasePredictor):\n    @cog.concurrent(max=8)\n"
            "    async def predict(self) -> str: ...\n",
            8,
        ),
        ("import cog as c\nclass Predictor:\n    @c.concurrent(max=2)\n    async def predict(self) -> str: ...\n", 2),
        (
            "from cog import concurrent as conc\nclass Predictor:\n    @conc(max=3)\n"
            "    async def run(self) -> str: ...\n",
            3,
        ),
        ("from cog import concurrent\nclass Predictor:\n    @concurrent\n    def predict(self) -> str: ...\n", 1),
        ("from cog import concurrent\nclass Predictor:\n    @concurrent()\n    def predict(self) -> str: ...\n", 1),
        ("class Predictor:\n    async def predict(self) -> str: ...\n", None),
        # someone else's `concurrent` is not cog's
        (
            "from mylib import concurrent\nclass Predictor:\n    @concurrent(max=5)\n"
            "    async def predict(self): ...\n",
            None,
        ),
        ("class Other:\n    @concurrent(max=5)\n    async def predict(self): ...\n", None),
        ("this is not python(", None),
    ],
)
def test_decorator_forms(tmp_path, source, expected):
    folder, config = _model(tmp_path, source)
    assert decorator_concurrency(folder, "predict.py:Predictor") == expected
    assert effective_concurrency(config, folder) == (expected or 1)


def test_run_method_wins_over_predict_and_functions_work(tmp_path):
    folder, _ = _model(tmp_path, "from cog import concurrent\n@concurrent(max=6)\nasync def run() -> str: ...\n")
    assert decorator_concurrency(folder, "predict.py:run") == 6
    folder2 = tmp_path / "b"
    folder2.mkdir()
    _model(
        folder2,
        "import cog\nclass Runner:\n    @cog.concurrent(max=5)\n    async def run(self): ...\n"
        "    def predict(self): ...\n",
    )
    assert decorator_concurrency(folder2, "predict.py") == 5  # no class name: Runner, then Predictor


def test_cog_yaml_concurrency_wins_over_the_decorator(tmp_path):
    folder, config = _model(tmp_path, HELLO_CONCURRENCY)
    config["concurrency"] = {"max": 2}
    assert effective_concurrency(config, folder) == 2
    assert with_decorator_concurrency(config, folder) is config
    assert effective_concurrency({"concurrency": {"max": "3"}}) == 3
    assert effective_concurrency({}) == 1


@pytest.mark.parametrize(
    "decorator, message",
    [
        ("@concurrent(max=0)", "at least 1"),
        ("@concurrent(max=n)", "integer literal"),
        ("@concurrent(max=True)", "integer literal"),
    ],
)
def test_bad_decorator_max_is_refused(tmp_path, decorator, message):
    folder, config = _model(
        tmp_path, f"from cog import concurrent\nclass Predictor:\n    {decorator}\n    async def predict(self): ...\n"
    )
    with pytest.raises(ConfigError, match=message):
        effective_concurrency(config, folder)


@pytest.mark.parametrize("value", [0, -1, "x", True, 1.5])
def test_bad_config_concurrency_is_refused(value):
    with pytest.raises(ConfigError):
        effective_concurrency({"concurrency": {"max": value}})


# --- system packages -------------------------------------------------------------------------


def test_system_packages_are_debian_names():
    config = {"build": {"system_packages": ["ffmpeg", "libgl1:amd64", "git=1:2.39.5-0+deb12u2", "ffmpeg"]}}
    assert system_packages(config) == ["ffmpeg", "libgl1", "git"]
    for bad in (["rm -rf /"], ["Foo"], [""], "ffmpeg", [1]):
        with pytest.raises(ConfigError):
            system_packages({"build": {"system_packages": bad}})


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-like host")
def test_missing_on_host_asks_dpkg():
    assert missing_on_host(["dpkg", "cogplane-no-such-package"]) == ["cogplane-no-such-package"]
    assert missing_on_host([]) == []


def test_check_names_every_missing_package_and_how_to_install_it():
    config = {"build": {"system_packages": ["dpkg", "cogplane-nope-a", "cogplane-nope-b"]}}
    with pytest.raises(ConfigError) as info:
        check_config(config, missing_packages=lambda names: [n for n in names if n.startswith("cogplane-")])
    message = str(info.value)
    assert "cogplane-nope-a, cogplane-nope-b are not installed on this machine" in message
    assert "sudo apt-get install cogplane-nope-a cogplane-nope-b" in message
    check_config({"build": {"system_packages": ["dpkg"]}}, missing_packages=lambda names: [])


def test_runner_image_set_is_what_the_dockerfile_installs():
    """The deployed push accepts exactly what gpu_runner/Dockerfile installs (and refuses the rest)."""
    dockerfile = (REPO / "gpu_runner" / "Dockerfile").read_text()
    install = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", dockerfile, re.S).group(1)
    installed = set(install.replace("\\", " ").split())
    assert set(cogconfig.RUNNER_IMAGE_PACKAGES) <= installed
    assert missing_in_runner_image(["ffmpeg", "libgl1", "libglib2.0-0", "libsm6", "libxext6", "libxrender1"]) == []
    assert missing_in_runner_image(["ffmpeg", "texlive-full"]) == ["texlive-full"]
    with pytest.raises(ConfigError, match="texlive-full is not installed in the runner image"):
        check_config(
            {"build": {"system_packages": ["ffmpeg", "texlive-full"]}},
            missing_packages=missing_in_runner_image,
            where=cogconfig.RUNNER_IMAGE,
        )
    readme = (REPO / "README.md").read_text()
    assert all(f"`{p}`" in readme for p in cogconfig.RUNNER_IMAGE_PACKAGES), "the README lists the set"
