"""Converters from public grounding benchmarks to the REC jsonl format of :mod:`spr.eval.data`:
:mod:`~spr.eval.convert.refcoco` (RefCOCO, RefCOCO+, RefCOCOg) and :mod:`~spr.eval.convert.flickr30k`
(Flickr30k Entities). Each writes one ``<split>.jsonl`` per split into an output folder."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConversionStats:
    """What a conversion wrote: examples per split, and how many items it skipped for each reason."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
