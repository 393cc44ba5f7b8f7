"""The model-serving process's heap slack: glibc malloc's ``M_TOP_PAD``.

A CPU forward allocates and frees tens of MiB of activations per batch. With glibc's default slack
(128 KiB) the freed heap top goes back to the kernel after every batch and the next batch faults it
in again, page by page: with the tiny CLIP that was a sixth of the scorer's CPU, as system time
(``bench/scorer_load.py`` prints user and system CPU per request). Keeping some slack at the top of
each heap avoids the round trip, at the price of up to that much freed memory staying resident per
malloc arena (one per busy thread, at most a few in the scorer).
"""

from __future__ import annotations

import ctypes
import logging
import platform

logger = logging.getLogger(__name__)

_M_TOP_PAD = -2  # from glibc's <malloc.h>


def set_heap_top_pad(pad_bytes: int) -> bool:
    """Ask glibc malloc to keep ``pad_bytes`` (bytes) of slack when it grows or trims a heap.

    Process-wide, for allocations from now on. Returns False, changing nothing, for ``pad_bytes`` <= 0
    and where the C library is not glibc (musl, macOS, Windows).
    """
    if pad_bytes <= 0 or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    if libc.mallopt(_M_TOP_PAD, ctypes.c_int(min(pad_bytes, 2**31 - 1))) != 1:
        logger.warning("glibc refused M_TOP_PAD=%d; keeping its default heap slack", pad_bytes)
        return False
    return True
