"""Put on the cog server's PYTHONPATH by gpu_runner.cog_server: every Python process of the server's
tree (the server, coglet's worker, Python subprocesses of the model) asks the kernel to SIGKILL it
when its parent dies (PR_SET_PDEATHSIG), so a runner killed with SIGKILL leaves no orphan.

Needed because coglet's worker does not exit when the server dies in the middle of a prediction: it
finishes the prediction first (observed with cog 0.23.1), which on a GPU can take many minutes.

COGPLANE_PDEATHSIG_PARENT holds the pid each process expects as its parent; a process that finds
another one (its parent died before prctl took effect) exits at once. Then this module steps aside:
it leaves sys.path and imports any other sitecustomize the environment has.
"""

import os
import sys


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


def _hand_over() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    me = sys.modules.pop(__name__)
    try:
        import sitecustomize  # noqa: F401  (the environment's own, if any)
    except ImportError:
        sys.modules[__name__] = me  # the import system expects to find this module there


_arm()
_hand_over()
