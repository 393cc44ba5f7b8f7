"""A small LRU of decoded, model-sized images, keyed by file identity (path, mtime, size).

Several requests per image are the norm (one per region), and decoding a PNG or JPEG is a large part of
a request's CPU work with a small CLIP. An entry is the downscaled RGB copy the models see (longer side
<= SPR_SCORER_DECODE_MAX_SIDE), so the cache holds at most ``items`` x max_side^2 x 3 bytes outside the
decoded-pixel budget (8 x 2048^2 x 3 = 96 MiB with the defaults). A file rewritten in place changes
its mtime or size and misses. Images sent as base64 are not cached (no identity to key them by).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from spr.scorer.images import ImageKey, ModelImage


class DecodedImageCache:
    """Thread-safe LRU of :class:`ModelImage` by (file identity, decode side); ``items`` = 0 disables it.

    Cached images are shared between requests: callers only read them (crops and resizes make copies).
    """

    def __init__(self, items: int) -> None:
        self.items = items
        self._entries: OrderedDict[tuple[ImageKey, int], ModelImage] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: ImageKey, max_side: int) -> ModelImage | None:
        with self._lock:
            found = self._entries.get((key, max_side))
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end((key, max_side))
            self.hits += 1
            return found

    def put(self, key: ImageKey, max_side: int, image: ModelImage) -> None:
        if self.items <= 0:
            return
        with self._lock:
            self._entries[(key, max_side)] = image
            self._entries.move_to_end((key, max_side))
            while len(self._entries) > self.items:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
