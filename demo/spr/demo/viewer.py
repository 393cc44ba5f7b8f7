"""The pair viewer: one self-contained HTML file (images inlined) showing every preference pair.

For each pair: the image with the region, the GT boxes, the rejected description's boxes and the
chosen (refined) description's boxes drawn as SVG rectangles in distinct colours; the two texts with
phrases and box spans highlighted; their scores. Then histograms of scores and margins. Boxes are
parsed from the texts with the pair's own grounding format, so the page shows what training sees.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from PIL import Image
from spr.shared import formats
from spr.shared.errors import SprError
from spr.shared.schemas import PairSide, ParseResult, PreferencePair, Size

logger = logging.getLogger(__name__)

COLOURS = {"region": "#f5a623", "gt": "#2ecc71", "rejected": "#e74c3c", "chosen": "#3498db"}
THUMB_MAX_SIDE = 480  # pixels; inlined images are downscaled to keep the page small


class ReportError(SprError):
    """The pairs could not be read or an image is missing."""


def read_pairs(sources: Sequence[Path]) -> list[PreferencePair]:
    """Read pairs from jsonl files or folders of them: PreferencePair lines, or a trainer spool folder."""
    pairs: dict[str, PreferencePair] = {}
    for path in _jsonl_files(sources):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                # a trainer spool line wraps the pair with its bookkeeping: {"seq", "pair_id", "pair", ...}
                pair = PreferencePair.model_validate(row.get("pair", row))
            except (ValueError, TypeError) as exc:
                raise ReportError(f"{path}:{lineno}: not a PreferencePair line: {exc}") from exc
            pairs.setdefault(pair.pair_id, pair)
    return list(pairs.values())


def _jsonl_files(sources: Sequence[Path]) -> Iterator[Path]:
    for source in sources:
        if source.is_dir():
            # a trainer spool keeps pairs in pairs-*.jsonl beside other files (e.g. rejected pairs)
            pattern = "pairs-*.jsonl" if (source / "spool.json").exists() else "*.jsonl"
            yield from sorted(source.rglob(pattern))
        elif source.is_file():
            yield source
        else:
            raise ReportError(f"pairs source {source} does not exist: pass a jsonl file or a spool folder")


def write_report(
    pairs: Sequence[PreferencePair], data_root: Path, out: Path, *, title: str = "SPR pairs"
) -> Path:
    """Write the HTML page to ``out`` and return its path. Images are read under ``data_root``."""
    sections = [_pair_section(i, pair, data_root) for i, pair in enumerate(pairs)]
    margins = [p.margin for p in pairs]
    chosen = [p.chosen.scores.total for p in pairs]
    rejected = [p.rejected.scores.total for p in pairs]
    page = _PAGE.format(
        title=html.escape(title),
        count=len(pairs),
        legend="".join(
            f'<span class="key" style="border-color:{c}">{html.escape(k)}</span>' for k, c in COLOURS.items()
        ),
        histograms=_histogram("total score: chosen", chosen, COLOURS["chosen"])
        + _histogram("total score: rejected", rejected, COLOURS["rejected"])
        + _histogram("margin (chosen - rejected)", margins, "#888"),
        sections="\n".join(sections) if sections else "<p>No pairs yet.</p>",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _pair_section(index: int, pair: PreferencePair, data_root: Path) -> str:
    image_path = data_root / pair.image.path
    try:
        with Image.open(image_path) as img:
            thumb = img.convert("RGB")
    except OSError as exc:
        raise ReportError(f"pair {pair.pair_id}: cannot read image {image_path}: {exc}") from exc
    scale = min(1.0, THUMB_MAX_SIDE / max(pair.image.width, pair.image.height))
    width, height = round(pair.image.width * scale), round(pair.image.height * scale)
    thumb = thumb.resize((width, height))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    image_size = Size(width=pair.image.width, height=pair.image.height)
    rects = [_rect(pair.region, "region", scale, "region")]
    rects += [_rect(obj.box, "gt", scale, obj.label) for obj in pair.objects]
    texts = []
    for kind, side in (("rejected", pair.rejected), ("chosen", pair.chosen)):
        parsed = formats.parse(side.text, pair.format, image_size=image_size, resized_size=pair.resized_size)
        rects += [_rect(b, kind, scale, ph.text) for ph in parsed.phrases for b in ph.boxes]
        texts.append(_text_block(kind, side, parsed))
    return _SECTION.format(
        index=index + 1,
        pair_id=html.escape(pair.pair_id),
        task_id=html.escape(pair.task_id),
        margin=pair.margin,
        width=width,
        height=height,
        data_url=data_url,
        rects="".join(rects),
        texts="".join(texts),
    )


def _rect(box: Sequence[float], kind: str, scale: float, label: str) -> str:
    x1, y1, x2, y2 = (v * scale for v in box)
    dash = ' stroke-dasharray="6 3"' if kind == "region" else ""
    return (
        f'<rect class="box box-{kind}" x="{x1:.1f}" y="{y1:.1f}" width="{x2 - x1:.1f}" '
        f'height="{y2 - y1:.1f}" fill="none" stroke="{COLOURS[kind]}" stroke-width="2"{dash}>'
        f"<title>{html.escape(kind)}: {html.escape(label)}</title></rect>"
    )


def _text_block(kind: str, side: PairSide, parsed: ParseResult) -> str:
    marks: list[tuple[int, int, str]] = []
    for phrase in parsed.phrases:
        if phrase.span[1] > phrase.span[0]:
            marks.append((phrase.span[0], phrase.span[1], "phrase"))
        marks.extend((s, e, "coords") for s, e in phrase.box_spans)
    body, pos = [], 0
    for start, end, cls in sorted(marks):
        if start < pos:
            continue  # overlapping spans: keep the first
        body.append(html.escape(side.text[pos:start]))
        body.append(f'<span class="{cls}">{html.escape(side.text[start:end])}</span>')
        pos = end
    body.append(html.escape(side.text[pos:]))
    s = side.scores
    semantic = "n/a" if s.semantic is None else f"{s.semantic:.3f}"
    return (
        f'<div class="text {kind}" style="border-color:{COLOURS[kind]}"><h4>{kind}'
        f"{' (refined)' if side.refined else ''} — candidate {html.escape(side.candidate_id)}</h4>"
        f'<p class="scores">total {s.total:.3f} · S_sem {semantic} · S_loc {s.localization:.3f}</p>'
        f"<pre>{''.join(body)}</pre></div>"
    )


def _histogram(title: str, values: Iterable[float], colour: str, bins: int = 20) -> str:
    vals = list(values)
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in vals:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    top = max(counts)
    bars = "".join(
        f'<rect class="bar" x="{i * 15}" y="{100 - 100 * c / top:.1f}" width="13" '
        f'height="{100 * c / top:.1f}" '
        f'fill="{colour}"><title>{lo + i * width:.3f}–{lo + (i + 1) * width:.3f}: {c}</title></rect>'
        for i, c in enumerate(counts)
    )
    return (
        f"<figure><figcaption>{html.escape(title)} (n={len(vals)}, {lo:.3f} … {hi:.3f})</figcaption>"
        f'<svg width="{bins * 15}" height="100">{bars}</svg></figure>'
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
.key {{ border-left: 14px solid; padding: 0 .8rem 0 .4rem; margin-right: .6rem; }}
section.pair {{ display: flex; gap: 1.2rem; border-top: 1px solid #ddd; padding: 1rem 0; }}
.texts {{ flex: 1; min-width: 20rem; }}
.text {{ border-left: 4px solid; padding-left: .6rem; margin-bottom: .8rem; }}
.text h4 {{ margin: 0; }}
.scores {{ margin: .2rem 0; font-size: .9rem; color: #555; }}
pre {{ white-space: pre-wrap; font-size: .9rem; }}
.phrase {{ background: #fff3b0; }}
.coords {{ background: #dde7f5; font-family: monospace; }}
figure {{ display: inline-block; margin: 0 1.5rem 1rem 0; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{count} pairs. {legend}</p>
<div class="histograms">{histograms}</div>
{sections}
</body></html>
"""

_SECTION = """<section class="pair" id="pair-{index}">
<div class="figure"><h3>#{index} <small>{pair_id} · task {task_id} · margin {margin:.3f}</small></h3>
<svg class="pair-image" width="{width}" height="{height}" viewBox="0 0 {width} {height}">
<image href="{data_url}" x="0" y="0" width="{width}" height="{height}"/>{rects}</svg></div>
<div class="texts">{texts}</div>
</section>"""
