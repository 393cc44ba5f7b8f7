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
    # as the model wrote it: the square's box was loose (refinement snapped it to the GT), the circle's exact
    before = formats.render(
        [("a red square", [(36.0, 44.0, 126.0, 104.0)]), ("a blue circle", [gt[1]])], fmt, image_size=SIZE
    )
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
            text_before_refinement=before,
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
    assert len(re.findall(r"data:image/(png|jpeg);base64,", page)) == 3
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


def test_chosen_text_before_and_after_refinement_marks_the_moved_box(tmp_path: Path) -> None:
    pair = _pair(0, tmp_path)
    page = write_report([pair], tmp_path, tmp_path / "report.html").read_text()
    assert "chosen, as written" in page and "chosen, refined" in page
    changed = re.findall(r'<span class="coords changed">([^<]*)</span>', page)
    # the square's box, once as written and once refined; the circle's box did not move
    assert changed == ["(113,183),(394,433)", "(125,167),(375,458)"]
    assert page.count('<span class="coords">') == 2 + 2  # the circle twice, the rejected text's two boxes
    # an older pair (no text before refinement) still renders, saying what is missing
    old = pair.model_copy(update={"chosen": pair.chosen.model_copy(update={"text_before_refinement": None})})
    page = write_report([old], tmp_path, tmp_path / "old.html").read_text()
    assert "the text before refinement was not recorded" in page and "coords changed" not in page


def test_boxes_carry_phrase_labels_in_layers_with_toggles(tmp_path: Path) -> None:
    page = write_report([_pair(0, tmp_path)], tmp_path, tmp_path / "report.html").read_text()
    assert re.findall(r'<text class="label label-chosen"[^>]*>([^<]*)</text>', page) == [
        "a red square",
        "a blue circle",
    ]
    assert len(re.findall(r'<text class="label label-rejected"', page)) == 2
    # layers bottom-up: GT (dashed) under region, rejected, chosen
    order = [m.group(1) for m in re.finditer(r'<g class="layer layer-(\w+)">', page)]
    assert order == ["gt", "region", "rejected", "chosen"]
    assert re.search(r'class="box box-gt"[^>]*stroke-dasharray="6 3"', page)
    toggles = re.findall(r'<input type="checkbox" data-layer="(\w+)" checked>', page)
    assert toggles == ["gt", "region", "rejected", "chosen", "labels"]


def test_sort_limit_and_histograms_with_axes(tmp_path: Path) -> None:
    pairs = [_pair(i, tmp_path) for i in range(4)]  # margins 0.24, 0.25, 0.26, 0.27
    page = write_report(pairs, tmp_path, tmp_path / "r.html", sort="margin", limit=2).read_text()
    assert re.findall(
        r'<section class="pair" id="pair-\d+">\n<div class="figure"><h3>#\d+ <small>(p-\d)', page
    ) == [
        "p-3",
        "p-2",
    ]
    assert "2 of 4 pairs shown (largest margin first)" in page
    # histograms over all 4 pairs, each with axis labels and ticks
    assert page.count('<figure class="histogram">') == 3
    assert page.count(">pairs</text>") == 3 and page.count(">total score</text>") == 2
    assert ">margin</text>" in page and "(n=4," in page
    assert len(re.findall(r'class="tick-label"', page)) >= 3 * 4
    with pytest.raises(ReportError, match="--limit must be a positive"):
        write_report(pairs, tmp_path, tmp_path / "r.html", limit=0)


def test_report_command_sorts_limits_and_prints_the_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spr.cli.main import main

    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(_pair(i, tmp_path).model_dump_json() + "\n" for i in range(3)))
    out = tmp_path / "view.html"
    args = [
        "report",
        str(src),
        "--data-root",
        str(tmp_path),
        "--out",
        str(out),
        "--sort",
        "score",
        "--limit",
        "1",
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith(f"1 of 3 pairs -> {out} (")
    assert out.read_text().count('<section class="pair"') == 1


def _noisy_pair(i: int, root: Path, size: Size) -> PreferencePair:
    """A photo-like (noisy) image: where JPEG thumbnails pay off."""
    import random

    rng = random.Random(i)
    path = f"photos/{i}.png"
    (root / "photos").mkdir(parents=True, exist_ok=True)
    noise = rng.randbytes(size.width * size.height * 3)
    Image.frombytes("RGB", (size.width, size.height), noise).save(root / path)
    pair = _pair(i, root)
    return pair.model_copy(update={"image": ImageRef(path=path, width=size.width, height=size.height)})


def test_images_are_scaled_thumbnails_and_a_16_pair_page_stays_small(tmp_path: Path) -> None:
    size = Size(width=960, height=720)
    pairs = [_noisy_pair(i, tmp_path, size) for i in range(16)]
    originals = sum((tmp_path / p.image.path).stat().st_size for p in pairs)
    page = write_report(pairs, tmp_path, tmp_path / "r.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 16  # noise: JPEG is the smaller encoding
    assert re.findall(r'<svg class="pair-image" width="(\d+)" height="(\d+)"', page)[0] == ("480", "360")
    # boxes follow the thumbnail's scale (0.5): the GT square [40, 40, 120, 110] in original pixels
    first = re.search(r'class="box box-gt" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', page)
    assert first is not None and [float(v) for v in first.groups()] == pytest.approx([20, 20, 40], abs=0.3)
    assert len(page.encode()) < originals / 10  # 16 x 2 MB of PNG noise -> a page of about 1.5 MB


# Appended to a copy of the page: measures where the browser laid out pair 1's image and chosen boxes,
# flips the GT toggle as a user would, and writes the results into the DOM for --dump-dom to print.
_PROBE = """<script>
const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const image = box(document.querySelector("#pair-1 image"));
const chosen = [...document.querySelectorAll("#pair-1 .box-chosen")].map(box);
const gtBefore = getComputedStyle(document.querySelector("#pair-1 .layer-gt")).display;
const toggle = document.querySelector('input[data-layer="gt"]');
toggle.checked = false;
toggle.dispatchEvent(new Event("change"));
const gtAfter = getComputedStyle(document.querySelector("#pair-1 .layer-gt")).display;
const out = document.createElement("pre");
out.id = "probe";
out.textContent = JSON.stringify({image, chosen, gtBefore, gtAfter});
document.body.appendChild(out);
</script></body>"""


def test_chosen_boxes_appear_at_their_pixel_positions_in_chromium(tmp_path: Path) -> None:
    import html as html_module
    import json

    size = Size(width=960, height=720)  # thumbnails at scale 0.5
    pair = _noisy_pair(0, tmp_path, size)
    chosen_boxes = [(200.0, 150.0, 500.0, 400.0), (560.0, 300.0, 880.0, 640.0)]
    text = formats.render(
        [("a red square", [chosen_boxes[0]]), ("a blue circle", [chosen_boxes[1]])],
        "qwen2vl",
        image_size=size,
    )
    pair = pair.model_copy(
        update={"chosen": pair.chosen.model_copy(update={"text": text, "text_before_refinement": None})}
    )
    page = write_report([pair], tmp_path, tmp_path / "report.html").read_text()
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", _PROBE))
    url = probe_page.resolve().as_uri()
    window = ["--window-size=1200,1000", "--force-device-scale-factor=1", "--hide-scrollbars"]
    dom = subprocess.run(
        [*_chromium_args(tmp_path), *window, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found is not None, dom[-2000:]
    probe = json.loads(html_module.unescape(found.group(1)))
    left, top = probe["image"][0], probe["image"][1]
    assert probe["image"][2] - left == pytest.approx(480) and probe["image"][3] - top == pytest.approx(360)
    expected = [(left + x1 / 2, top + y1 / 2, left + x2 / 2, top + y2 / 2) for x1, y1, x2, y2 in chosen_boxes]
    # qwen2vl writes thousandths of the image: up to 0.5 / 1000 * 960 px of rounding, halved by the scale
    for drawn, want in zip(probe["chosen"], expected, strict=True):
        assert drawn == pytest.approx(want, abs=0.5)
    assert (probe["gtBefore"], probe["gtAfter"]) == ("inline", "none")  # the toggle hides the GT layer

    # and the pixels: the chosen colour on each box's left edge, at its vertical middle
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*_chromium_args(tmp_path), *window, f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        for x1, y1, _, y2 in expected:
            x, y = round(x1), round((y1 + y2) / 2)
            edge = [rgb.getpixel((x + dx, y)) for dx in (-1, 0, 1)]
            assert any(abs(r - 0x34) + abs(g - 0x98) + abs(b - 0xDB) < 40 for r, g, b in edge), (x, y, edge)
            inside = rgb.getpixel((x + 8, y))
            assert (
                abs(inside[0] - 0x34) + abs(inside[1] - 0x98) + abs(inside[2] - 0xDB) >= 40
            )  # not a filled box


def test_report_reads_trainer_spools_with_the_spools_reader_while_one_is_written(tmp_path: Path) -> None:
    from spr.trainer.spool import Spool

    pairs = [_pair(i, tmp_path) for i in range(3)]
    spool_dir = tmp_path / "run" / "spool"
    with Spool(spool_dir, data_root=tmp_path) as spool:
        assert [r.status for r in spool.append_many(pairs[:2])] == ["added", "added"]
    with next(spool_dir.glob("pairs-*.jsonl")).open("a") as shard:
        shard.write('{"seq": 2, "pair_id": "p-9", "pa')  # a line the trainer is writing right now
    (tmp_path / "run" / "more.jsonl").write_text(pairs[2].model_dump_json() + "\n")

    assert [p.pair_id for p in read_pairs([spool_dir])] == ["p-0", "p-1"]
    # a folder holding a spool: the spool through its reader, other jsonl files line by line
    assert sorted(p.pair_id for p in read_pairs([tmp_path / "run"])) == ["p-0", "p-1", "p-2"]
