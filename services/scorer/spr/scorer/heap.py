"""The serving process's heaps: glibc malloc's slack (``M_TOP_PAD``) and Python's garbage collector.

A CPU forward allocates and frees tens of MiB of activations per batch. With glibc's default slack
(128 KiB) the freed heap top goes back to the kernel after every batch and the next batch faults it
in again, page by page: with the tiny CLIP that was a sixth of the scorer's CPU, as system time
(``bench/scorer_load.py`` prints user and system CPU per request). Keeping some slack at the top of
each heap avoids the round trip, at the price of up to that much freed memory staying resident per
malloc arena (one per busy thread, at most a few in the scorer).

Python's cyclic garbage collector, on its side, walks every tracked object at each full collection:
after start-up that is mostly the models' and the frameworks' objects, which live as long as the
process; and it starts a young collection each time 700 more container objects are alive than at the
last one, which 32 requests in flight (a few hundred objects each) cross all the time, promoting their
objects to the older generations. :func:`prepare_gc_for_serving` freezes the start-up objects once
and raises the young threshold: with ``bench/scorer_load.py``'s localization-only load, the collector's
CPU per request fell from 0.75 ms to 0.01-0.03 ms.
"""

from __future__ import annotations

import ctypes
import gc
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


# Young-generation threshold while serving (Python's default: 700); the older ones keep theirs.
GC_YOUNG_THRESHOLD = 10_000


def prepare_gc_for_serving(young_threshold: int = GC_YOUNG_THRESHOLD) -> int:
    """Collect once, exclude every object alive now from later collections (``gc.freeze``) and raise
    the young generation's threshold to ``young_threshold`` (objects).

    For entry points, after the models loaded and before serving. Returns how many objects were
    frozen. Frozen objects are still freed when their reference count drops to zero; only a reference
    cycle among them would outlive its last use (models and apps live until exit anyway). The higher
    threshold lets up to that many more objects wait for a collection: a few MiB at most.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    return gc.get_freeze_count()
