"""The pair viewer (``spr report``): one self-contained HTML file that shows why each pair was chosen.

For each pair: a thumbnail of the image (see :mod:`spr.demo.thumbnails`) with, from the bottom up, the
ground-truth boxes (dashed), the query region (dotted), the rejected description's boxes and the
chosen (refined) description's boxes, each of the last two labelled with its phrase; checkboxes at the
top hide or show each layer. Beside it the texts: the rejected one, and the chosen one before and
after refinement with the coordinates refinement changed highlighted. Histograms (with axes) of the
scores and margins of all pairs head the page. Boxes are parsed from the texts with the pair's own
grounding format, so the page shows what training sees.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from spr.demo.histograms import histogram
from spr.demo.thumbnails import Thumbnail, ThumbnailError, thumbnail
from spr.shared import formats
from spr.shared.errors import SprError
from spr.shared.schemas import GroundingFormat, PairSide, ParseResult, PreferencePair, Size
from spr.trainer.spool import META_FILE, SpoolError, is_spool, read_spool

logger = logging.getLogger(__name__)

COLOURS = {"gt": "#2ecc71", "region": "#f5a623", "rejected": "#e74c3c", "chosen": "#3498db"}
LAYER_NAMES = {
    "gt": "ground truth (dashed)",
    "region": "query region (dotted)",
    "rejected": "rejected",
    "chosen": "chosen (refined)",
}
SortKey = Literal["margin", "score"]
SORT_KEYS: tuple[SortKey, ...] = ("margin", "score")

Span = tuple[int, int]


class ReportError(SprError):
    """The pairs could not be read or an image is missing."""


def read_pairs(sources: Sequence[Path]) -> list[PreferencePair]:
    """Read pairs from jsonl files or folders of them: PreferencePair lines, or trainer spool folders
    (read with the trainer's read-only spool reader; a spool's rejected pairs are not shown)."""
    pairs: dict[str, PreferencePair] = {}
    for source in sources:
        for pair in _pairs_of(source):
            pairs.setdefault(pair.pair_id, pair)
    return list(pairs.values())


def _pairs_of(source: Path) -> Iterator[PreferencePair]:
    if source.is_file():
        yield from _pair_lines(source)
    elif not source.is_dir():
        raise ReportError(f"pairs source {source} does not exist: pass a jsonl file or a spool folder")
    elif is_spool(source):
        yield from _spool_pairs(source)
    else:
        spools = sorted({path.parent for path in source.rglob(META_FILE) if is_spool(path.parent)})
        for path in sorted(source.rglob("*.jsonl")):
            if not any(path.is_relative_to(spool) for spool in spools):
                yield from _pair_lines(path)
        for spool in spools:
            yield from _spool_pairs(spool)


def _spool_pairs(directory: Path) -> Iterator[PreferencePair]:
    try:
        records = read_spool(directory)
    except SpoolError as exc:
        raise ReportError(f"spool {directory}: {exc}") from exc
    for record in records:
        yield record.pair


def _pair_lines(path: Path) -> Iterator[PreferencePair]:
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            # a spool shard line wraps the pair with its bookkeeping: {"seq", "pair_id", "pair", ...}
            pair = PreferencePair.model_validate(row.get("pair", row))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ReportError(f"{path}:{lineno}: not a PreferencePair line: {exc}") from exc
        yield pair


def select_pairs(
    pairs: Sequence[PreferencePair], *, sort: SortKey | None = None, limit: int | None = None
) -> list[PreferencePair]:
    """The pairs to show: by largest margin or chosen total score first (else as read), the first
    ``limit``."""
    if limit is not None and limit < 1:
        raise ReportError(f"--limit must be a positive number of pairs (got {limit})")
    chosen = list(pairs)
    if sort == "margin":
        chosen.sort(key=lambda p: -p.margin)
    elif sort == "score":
        chosen.sort(key=lambda p: -p.chosen.scores.total)
    elif sort is not None:
        raise ReportError(f"--sort must be one of {', '.join(SORT_KEYS)} (got {sort!r})")
    return chosen if limit is None else chosen[:limit]


def write_report(
    pairs: Sequence[PreferencePair],
    data_root: Path,
    out: Path,
    *,
    title: str = "SPR pairs",
    sort: SortKey | None = None,
    limit: int | None = None,
) -> Path:
    """Write the HTML page to ``out`` and return its path. Images are read under ``data_root``.

    The histograms cover every pair; the sections show ``select_pairs(pairs, sort=, limit=)``.
    """
    shown = select_pairs(pairs, sort=sort, limit=limit)
    sections = [_pair_section(i, pair, data_root) for i, pair in enumerate(shown)]
    chosen = [p.chosen.scores.total for p in pairs]
    rejected = [p.rejected.scores.total for p in pairs]
    both = chosen + rejected
    score_range = (min(both), max(both)) if both else None
    order = {"margin": "largest margin first", "score": "highest chosen score first", None: "as read"}[sort]
    page = _PAGE.format(
        title=html.escape(title),
        shown=f"{len(shown)} of {len(pairs)} pairs shown ({order})",
        toggles="".join(
            f'<label><input type="checkbox" data-layer="{kind}" checked> '
            f'<span class="key" style="border-color:{COLOURS[kind]}">{html.escape(name)}</span></label>'
            for kind, name in LAYER_NAMES.items()
        )
        + '<label><input type="checkbox" data-layer="labels" checked> phrase labels</label>',
        histograms=histogram(
            "total score: chosen", chosen, COLOURS["chosen"], x_label="total score", value_range=score_range
        )
        + histogram(
            "total score: rejected",
            rejected,
            COLOURS["rejected"],
            x_label="total score",
            value_range=score_range,
        )
        + histogram("margin (chosen - rejected)", [p.margin for p in pairs], "#888", x_label="margin"),
        sections="\n".join(sections) if sections else "<p>No pairs yet.</p>",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _pair_section(index: int, pair: PreferencePair, data_root: Path) -> str:
    try:
        thumb = thumbnail(data_root / pair.image.path, pair.image.width, pair.image.height)
    except ThumbnailError as exc:
        raise ReportError(f"pair {pair.pair_id}: {exc}") from exc
    image_size = Size(width=pair.image.width, height=pair.image.height)

    def parse(text: str) -> ParseResult:
        return formats.parse(text, pair.format, image_size=image_size, resized_size=pair.resized_size)

    rejected, chosen = parse(pair.rejected.text), parse(pair.chosen.text)
    layers = [
        _layer("gt", [_rect(o.box, "gt", thumb, o.label) for o in pair.objects]),
        _layer("region", [_rect(pair.region, "region", thumb, "query region")]),
        _layer("rejected", _phrase_boxes(rejected, "rejected", thumb)),
        _layer("chosen", _phrase_boxes(chosen, "chosen", thumb)),
    ]
    texts = [_text_block("rejected", "rejected", pair.rejected, rejected, set())]
    before = pair.chosen.text_before_refinement
    if pair.chosen.refined and before is not None:
        changed_before, changed_after = changed_coordinates(before, pair.chosen.text, pair.format, parse)
        texts.append(
            _text_block(
                "chosen", "chosen, as written", pair.chosen, parse(before), changed_before, text=before
            )
        )
        texts.append(_text_block("chosen", "chosen, refined", pair.chosen, chosen, changed_after))
    else:
        note = (
            " (refined; the text before refinement was not recorded with this pair)"
            if pair.chosen.refined
            else " (as written: refinement left it unchanged)"
        )
        texts.append(_text_block("chosen", "chosen" + note, pair.chosen, chosen, set()))
    return _SECTION.format(
        index=index + 1,
        pair_id=html.escape(pair.pair_id),
        task_id=html.escape(pair.task_id),
        margin=pair.margin,
        width=thumb.width,
        height=thumb.height,
        data_url=thumb.data_url,
        layers="".join(layers),
        texts="".join(texts),
    )


def changed_coordinates(
    before: str, after: str, fmt: GroundingFormat, parse: Callable[[str], ParseResult]
) -> tuple[set[Span], set[Span]]:
    """The coordinate spans refinement changed, in ``before`` and in ``after``.

    Refinement only rewrites coordinate spans, so the i-th box of one text is the i-th of the other;
    a box whose coordinate text differs was moved. Texts whose box counts differ (not a refinement of
    each other) have no spans marked.
    """
    spans_before = [s for ph in parse(before).phrases for s in ph.box_spans]
    spans_after = [s for ph in parse(after).phrases for s in ph.box_spans]
    if len(spans_before) != len(spans_after):
        logger.debug("refined text of format %s has a different box count: no diff shown", fmt)
        return set(), set()
    moved = [
        (b, a)
        for b, a in zip(spans_before, spans_after, strict=True)
        if before[b[0] : b[1]] != after[a[0] : a[1]]
    ]
    return {(b[0], b[1]) for b, _ in moved}, {(a[0], a[1]) for _, a in moved}


def _layer(kind: str, items: list[str]) -> str:
    return f'<g class="layer layer-{kind}">{"".join(items)}</g>'


def _phrase_boxes(parsed: ParseResult, kind: str, thumb: Thumbnail) -> list[str]:
    items = []
    for phrase in parsed.phrases:
        for box in phrase.boxes:
            items.append(_rect(box, kind, thumb, phrase.text))
            items.append(_label(box, kind, thumb, phrase.text))
    return items


def _rect(box: Sequence[float], kind: str, thumb: Thumbnail, label: str) -> str:
    """A box in original-image pixels, drawn in thumbnail pixels."""
    x1, y1, x2, y2 = (v * thumb.scale for v in box)
    style = {"gt": ' stroke-dasharray="6 3"', "region": ' stroke-dasharray="2 3"'}.get(kind, "")
    width = "1.5" if kind in ("gt", "region") else "2"
    return (
        f'<rect class="box box-{kind}" x="{x1:.1f}" y="{y1:.1f}" width="{x2 - x1:.1f}" '
        f'height="{y2 - y1:.1f}" fill="none" stroke="{COLOURS[kind]}" stroke-width="{width}"{style}>'
        f"<title>{html.escape(LAYER_NAMES[kind])}: {html.escape(label)}</title></rect>"
    )


def _label(box: Sequence[float], kind: str, thumb: Thumbnail, text: str) -> str:
    x1, y1 = box[0] * thumb.scale, box[1] * thumb.scale
    # above the box when there is room, else just inside its top edge
    y = y1 - 3 if y1 >= 12 else y1 + 11
    return (
        f'<text class="label label-{kind}" x="{x1 + 2:.1f}" y="{y:.1f}" fill="{COLOURS[kind]}">'
        f"{html.escape(text or '(no phrase)')}</text>"
    )


def _text_block(
    kind: str,
    heading: str,
    side: PairSide,
    parsed: ParseResult,
    changed: set[Span],
    *,
    text: str | None = None,
) -> str:
    text = side.text if text is None else text
    marks: list[tuple[int, int, str]] = []
    for phrase in parsed.phrases:
        if phrase.span[1] > phrase.span[0]:
            marks.append((phrase.span[0], phrase.span[1], "phrase"))
        for start, end in phrase.box_spans:
            marks.append((start, end, "coords changed" if (start, end) in changed else "coords"))
    body, pos = [], 0
    for start, end, cls in sorted(marks):
        if start < pos:
            continue  # overlapping spans: keep the first
        body.append(html.escape(text[pos:start]))
        body.append(f'<span class="{cls}">{html.escape(text[start:end])}</span>')
        pos = end
    body.append(html.escape(text[pos:]))
    s = side.scores
    semantic = "n/a" if s.semantic is None else f"{s.semantic:.3f}"
    scores = f"total {s.total:.3f} · S_sem {semantic} · S_loc {s.localization:.3f}"
    if heading == "chosen, as written":
        scores = "as the model wrote it; its refined version below is what training sees"
    moved = f' · <span class="changed">{len(changed)} box(es) moved</span>' if changed else ""
    return (
        f'<div class="text {kind}" style="border-color:{COLOURS[kind]}"><h4>{html.escape(heading)}'
        f" — candidate {html.escape(side.candidate_id)}</h4>"
        f'<p class="scores">{scores}{moved}</p><pre>{"".join(body)}</pre></div>'
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
.toggles label {{ margin-right: 1rem; white-space: nowrap; }}
.key {{ border-left: 14px solid; padding-left: .4rem; }}
section.pair {{ display: flex; gap: 1.2rem; border-top: 1px solid #ddd; padding: 1rem 0; }}
.figure h3 {{ margin: 0 0 .4rem 0; font-size: 1rem; }}
.texts {{ flex: 1; min-width: 20rem; }}
.text {{ border-left: 4px solid; padding-left: .6rem; margin-bottom: .8rem; }}
.text h4 {{ margin: 0; }}
.scores {{ margin: .2rem 0; font-size: .9rem; color: #555; }}
pre {{ white-space: pre-wrap; font-size: .9rem; margin: .3rem 0; }}
.phrase {{ background: #fff3b0; }}
.coords {{ background: #dde7f5; font-family: monospace; }}
.coords.changed, span.changed {{ background: #ffd0a8; outline: 1px solid #e67e22; }}
.label {{ font: 11px system-ui, sans-serif; paint-order: stroke; stroke: #fff; stroke-width: 3px; }}
figure {{ display: inline-block; margin: 0 1.5rem 1rem 0; }}
.axis, .tick {{ stroke: #444; }}
.tick-label, .axis-label {{ font: 10px system-ui, sans-serif; fill: #333; }}
.hide-gt .layer-gt, .hide-region .layer-region, .hide-rejected .layer-rejected,
.hide-chosen .layer-chosen, .hide-labels .label {{ display: none; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{shown}.</p>
<p class="toggles">{toggles}</p>
<div class="histograms">{histograms}</div>
{sections}
<script>
for (const box of document.querySelectorAll(".toggles input")) {{
  box.addEventListener("change", () =>
    document.body.classList.toggle("hide-" + box.dataset.layer, !box.checked));
}}
</script>
</body></html>
"""

_SECTION = """<section class="pair" id="pair-{index}">
<div class="figure"><h3>#{index} <small>{pair_id} · task {task_id} · margin {margin:.3f}</small></h3>
<svg class="pair-image" width="{width}" height="{height}" viewBox="0 0 {width} {height}">
<image href="{data_url}" x="0" y="0" width="{width}" height="{height}"/>{layers}</svg></div>
<div class="texts">{texts}</div>
</section>"""
