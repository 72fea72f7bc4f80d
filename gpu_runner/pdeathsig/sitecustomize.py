"""Put on the cog server's PYTHONPATH by gpu_runner.cog_server: every Python process of the server's
tree (the server, coglet's worker, Python subprocesses of the model) asks the kernel to SIGKILL it
when its parent dies (PR_SET_PDEATHSIG), so a runner killed with SIGKILL leaves no orphan.

Needed because coglet's worker does not exit when the server dies in the middle of a prediction: it
finishes the prediction first (observed with cog 0.23.1), which on a GPU can take many minutes.

COGPLANE_PDEATHSIG_PARENT holds the pid each process expects as its parent; a process that finds
another one (its parent died before prctl took effect) exits at once.

It also makes a failing `setup()` print its traceback (coglet 0.23.1 keeps only the exception's
one-line message, and can lose what setup() printed just before it raised): once `cog` is
imported, the setup() of every cog.BaseRunner subclass (that is, every BasePredictor) is wrapped
so that an exception first goes to stderr with its traceback, then propagates unchanged. coglet
captures setup's stderr, so the runner finds the traceback in the server's log, as lines of the
model's own setup output.

Then this module steps aside: it leaves sys.path and imports any other sitecustomize the
environment has.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


def _arm() -> None:
    expected = os.environ.get("COGPLANE_PDEATHSIG_PARENT")
    if not expected or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:
        os._exit(1)
    os.environ["COGPLANE_PDEATHSIG_PARENT"] = str(os.getpid())  # for our children


def _report_setup_failure() -> None:
    """Print the exception being handled, with its traceback, once (coglet keeps only its message)."""
    import time
    import traceback

    exc = sys.exc_info()[1]
    if exc is None or getattr(exc, "__cogplane_reported__", False):
        return  # a setup() that calls its base's setup(): printed once, by the inner one
    try:
        setattr(exc, "__cogplane_reported__", True)  # noqa: B010 - a mark on the model's exception
    except AttributeError:
        pass
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # not this wrapper
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    print(text.rstrip("\n"), file=sys.stderr, flush=True)
    # coglet forwards captured output from a reader of its own; a failure reported at
    # once can overtake the last lines (cog 0.23.1): give them a moment
    time.sleep(0.3)


def _traced(setup: Callable[..., Any]) -> Callable[..., Any]:
    """setup() that reports its exception (with the traceback) before it propagates."""
    import functools
    import inspect

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(setup):

        @functools.wraps(setup)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await setup(*args, **kwargs)
            except BaseException:
                _report_setup_failure()
                raise
    else:

        @functools.wraps(setup)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return setup(*args, **kwargs)
            except BaseException:
                _report_setup_failure()
                raise

    setattr(wrapper, "__cogplane_traced__", True)  # noqa: B010 - a mark on our wrapper
    return wrapper


def _patch(base: type) -> None:
    """Every subclass of `base` (cog.BaseRunner) defined from now on gets a traced setup()."""
    inherited = base.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: type, **kwargs: Any) -> None:
        if inherited is not None:
            inherited.__func__(cls, **kwargs)
        setup = cls.__dict__.get("setup")
        if callable(setup) and not getattr(setup, "__cogplane_traced__", False):
            setattr(cls, "setup", _traced(setup))  # noqa: B010 - patches the model's class

    setattr(base, "__init_subclass__", classmethod(__init_subclass__))  # noqa: B010 - patches cog's class


def _print_setup_tracebacks() -> None:
    import importlib.abc
    import importlib.machinery

    class _Finder(importlib.abc.MetaPathFinder):
        """Patches cog.predictor right after it is first imported, then removes itself."""

        def find_spec(
            self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
        ) -> ModuleSpec | None:
            if name != "cog.predictor":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            loader = spec.loader
            original = loader.exec_module

            def exec_module(module: ModuleType) -> None:
                original(module)
                base = getattr(module, "BaseRunner", None)
                if isinstance(base, type):
                    _patch(base)

            setattr(loader, "exec_module", exec_module)  # noqa: B010 - patches this one loader
            return spec

    sys.meta_path.insert(0, _Finder())


def _hand_over() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    me = sys.modules.pop(__name__)
    try:
        importlib.import_module("sitecustomize")  # the environment's own, if any
    except ImportError:
        sys.modules[__name__] = me  # the import system expects to find this module there


_arm()
try:
    _print_setup_tracebacks()
except Exception:  # noqa: BLE001, S110 - a convenience; never stop a model from starting
    pass
_hand_over()
