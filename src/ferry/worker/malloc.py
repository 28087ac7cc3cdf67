"""Fewer glibc malloc arenas for a worker process (and for the API process that runs
the embedded default's worker): its memory stays flat.

glibc gives threads that allocate at once arenas of their own, up to eight per
core, and keeps what is freed in each arena for reuse by that arena. A worker
runs 32 threads and a loop: every load peak (a long backlog, a recovery pass
over it) grew another arena's share, and RSS rose in steps through a 100,000-job
run (bench/e2e.py). Two arenas keep it flat, and the threads hardly allocate
outside the GIL, so they do not contend for them.
"""

from __future__ import annotations

import ctypes
import os

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas, before its threads start. False where the C
    library is not glibc, or `MALLOC_ARENA_MAX` is set (glibc applies that itself)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    linked = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
    if not hasattr(linked, "mallopt"):
        return False
    return bool(linked.mallopt(_M_ARENA_MAX, arenas))
