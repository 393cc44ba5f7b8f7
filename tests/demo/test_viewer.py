"""The pair viewer: a self-contained page whose boxes really render in a browser (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from spr.demo.viewer import ReportError, read_pairs, write_report
from spr.shared import formats
from spr.shared.schemas import (
    AnnotatedObject,
    GroundingFormat,
    ImageRef,
    PairSide,
    PreferencePair,
    Provenance,
    Scores,
    Size,
)

SIZE = Size(width=320, height=240)


def _pair(i: int, root: Path, fmt: GroundingFormat = "qwen2vl") -> PreferencePair:
    path = f"images/{i}.png"
    (root / "images").mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (SIZE.width, SIZE.height), (230, 230, 230))
    ImageDraw.Draw(img).rectangle((40, 40, 120, 110), fill=(200, 30, 30))
    ImageDraw.Draw(img).ellipse((150, 60, 230, 140), fill=(30, 30, 200))
    img.save(root / path)
    gt = [(40.0, 40.0, 120.0, 110.0), (150.0, 60.0, 230.0, 140.0)]
    rejected = formats.render(
        [("a red square", [(30.0, 50.0, 140.0, 100.0)]), ("a blue circle", [(100.0, 20.0, 200.0, 200.0)])],
        fmt,
        image_size=SIZE,
    )
    chosen = formats.render([("a red square", [gt[0]]), ("a blue circle", [gt[1]])], fmt, image_size=SIZE)
    return PreferencePair(
        pair_id=f"p-{i}",
        task_id=f"t-{i}",
        image=ImageRef(path=path, width=SIZE.width, height=SIZE.height),
        region=(30.0, 30.0, 240.0, 150.0),
        objects=[
            AnnotatedObject(label="red square", box=gt[0]),
            AnnotatedObject(label="blue circle", box=gt[1]),
        ],
        format=fmt,
        prompt="Describe the region.",
        chosen=PairSide(
            candidate_id="c1",
            text=chosen,
            scores=Scores(semantic=0.3, localization=1.0, total=0.44),
            refined=True,
        ),
        rejected=PairSide(
            candidate_id="c2",
            text=rejected,
            scores=Scores(semantic=0.2, localization=0.2, total=0.2),
            refined=False,
        ),
        margin=0.24 + i * 0.01,
        provenance=Provenance(generator_model="tiny", scorer_settings_hash="h"),
    )


def test_report_counts_boxes_and_reads_jsonl(tmp_path: Path) -> None:
    pairs = [_pair(i, tmp_path) for i in range(3)]
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(p.model_dump_json() + "\n" for p in pairs + pairs[:1]))  # one duplicate line
    loaded = read_pairs([src])
    assert [p.pair_id for p in loaded] == ["p-0", "p-1", "p-2"]
    out = write_report(loaded, tmp_path, tmp_path / "report.html")
    page = out.read_text()
    # per pair: 1 region + 2 GT + 2 rejected + 2 chosen
    assert len(re.findall(r'class="box box-', page)) == 3 * 7
    assert page.count('class="box box-chosen"') == 6
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page  # self-contained


@pytest.mark.parametrize("fmt", ["shikra", "qwen3vl"])
def test_report_draws_boxes_in_original_image_pixels(tmp_path: Path, fmt: GroundingFormat) -> None:
    # The chosen (refined) boxes are the GT boxes written in the format: drawn where the GT is, up to
    # the format's rounding (a thousandth of the image, or of Shikra's padded square).
    out = write_report([_pair(0, tmp_path, fmt)], tmp_path, tmp_path / "report.html")
    page = out.read_text()
    chosen = re.findall(
        r'class="box box-chosen" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', page
    )
    drawn = [(float(x), float(y), float(x) + float(w), float(y) + float(h)) for x, y, w, h in chosen]
    for box, gt in zip(drawn, [(40.0, 40.0, 120.0, 110.0), (150.0, 60.0, 230.0, 140.0)], strict=True):
        assert box == pytest.approx(gt, abs=0.5), fmt


def test_report_bad_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        read_pairs([tmp_path / "missing.jsonl"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pair_id": 1}\n')
    with pytest.raises(ReportError, match=r"bad\.jsonl:1"):
        read_pairs([bad])


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed: run scripts/bootstrap.sh (it installs Debian's chromium)")
    return binary


def _chromium_args(tmp_path: Path) -> list[str]:
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    pairs = [_pair(i, tmp_path) for i in range(2)]
    out = write_report(pairs, tmp_path, tmp_path / "report.html")
    url = out.resolve().as_uri()
    dom = subprocess.run(
        [*_chromium_args(tmp_path), "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert len(re.findall(r'<rect class="box box-', dom)) == 2 * 7
    assert len(re.findall(r"<image ", dom)) == 2

    shot = tmp_path / "shot.png"
    subprocess.run(
        [*_chromium_args(tmp_path), "--window-size=1000,900", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # not blank: text, image and boxes were painted
    # the red square from the inlined image and the chosen-box blue both appear on screen
    present = {c for _, c in colours}
    assert any(r > 180 and g < 60 and b < 60 for r, g, b in present)
    assert (0x34, 0x98, 0xDB) in present
