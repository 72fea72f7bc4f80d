"""Child processes that die with their parent (Linux PR_SET_PDEATHSIG): the local dispatcher's
runners, a runner's cog server and its environment builds; and the heap of a long-lived process
(`settle_heap`). Used by cogplane and gpu_runner alike."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that sets PR_SET_PDEATHSIG=SIGKILL in the child (None where unsupported).

    libc's prctl is looked up here, in the parent, so that the forked child only makes the call.
    If the parent already died between fork and prctl, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def settle_heap(*, collect: bool = True) -> None:
    """For a long-lived process once its code is loaded and its services built: what exists now
    (modules, routes, schemas: 70-90 thousand objects in the API process) moves to the garbage
    collector's permanent generation (`gc.freeze`), so the full collections that traffic sets off
    later walk only what came after. Each one walked all of it before: about 45 ms in the API
    process's event loop, a stall every request in flight waited out (seen twice in 20 s of
    4-client load). `collect` first frees what start-up left behind (a full collection, once);
    a Lambda init skips it (its cost would be the cold start's) and freezes as it is."""
    if collect:
        gc.collect()
    gc.freeze()
