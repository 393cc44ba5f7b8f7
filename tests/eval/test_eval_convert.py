"""Converters: a RefCOCO-format fixture (refs pickle + instances.json, written here) and a Flickr30k
Entities fixture, converted to REC jsonl and checked split by split, box by box."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from spr.cli.main import main
from spr.eval.convert.flickr30k import convert_flickr30k, parse_sentence
from spr.eval.convert.refcoco import convert_refcoco
from spr.eval.data import EvalDataError, RecExample, read_rec_examples

INSTANCES = {
    "images": [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 640, "height": 480},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 500, "height": 375},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "bbox": [100.5, 50.0, 200.0, 100.25], "category_id": 1},
        {"id": 11, "image_id": 1, "bbox": [0, 0, 40, 30], "category_id": 1},
        {"id": 20, "image_id": 2, "bbox": [10, 20, 30, 40], "category_id": 2},
        {"id": 21, "image_id": 2, "bbox": [10, 20, 0, 40], "category_id": 2},
    ],
    "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
}
REFS = [
    {
        "ref_id": 0,
        "ann_id": 10,
        "image_id": 1,
        "split": "val",
        # the ref's own file_name names no file (annotation suffix): the converter must not use it
        "file_name": "COCO_train2014_000000000001_10.jpg",
        "sentences": [{"sent": "man in red", "raw": "Man in red", "sent_id": 0}, {"sent": "left guy"}],
    },
    {"ref_id": 1, "ann_id": 11, "image_id": 1, "split": "testA", "sentences": [{"sent": "top corner"}]},
    {"ref_id": 2, "ann_id": 20, "image_id": 2, "split": "testB", "sentences": [{"sent": "small dog"}]},
    {"ref_id": 3, "ann_id": 21, "image_id": 2, "split": "testB", "sentences": [{"sent": "empty box"}]},
    {"ref_id": 4, "ann_id": 99, "image_id": 2, "split": "val", "sentences": [{"sent": "lost"}]},
]


@pytest.fixture()
def refcoco(tmp_path: Path) -> tuple[Path, Path]:
    refs = tmp_path / "refs(unc).p"
    # protocol 2 is what the Python 2 era refs files use
    refs.write_bytes(pickle.dumps(REFS, protocol=2))
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(INSTANCES))
    return refs, instances


def test_refcoco_one_file_per_split_with_xyxy_pixel_boxes(refcoco: tuple[Path, Path], tmp_path: Path) -> None:
    refs, instances = refcoco
    out = tmp_path / "out"
    stats = convert_refcoco(refs, instances, out, image_prefix="train2014/")
    assert stats.written == {"val": 2, "testA": 1, "testB": 1}
    assert stats.skipped == {"empty box": 1, "annotation or image not in instances.json": 1}
    assert sorted(p.name for p in out.iterdir()) == ["testA.jsonl", "testB.jsonl", "val.jsonl"]

    val = read_rec_examples(out / "val.jsonl")
    assert [e.expression for e in val] == ["man in red", "left guy"]
    assert [e.id for e in val] == ["refs(unc)/val/0/0", "refs(unc)/val/0/1"]
    assert val[0].box == (100.5, 50.0, 300.5, 150.25)  # COCO [x, y, w, h] -> [x1, y1, x2, y2]
    assert val[0].image == "train2014/COCO_train2014_000000000001.jpg"
    assert (val[0].width, val[0].height) == (640, 480)
    (dog,) = read_rec_examples(out / "testB.jsonl")
    assert dog == RecExample(
        id="refs(unc)/testB/2/0",
        image="train2014/COCO_train2014_000000000002.jpg",
        expression="small dog",
        box=(10.0, 20.0, 40.0, 60.0),
        width=500,
        height=375,
    )


def test_refcoco_cli_and_bad_inputs(
    refcoco: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs, instances = refcoco
    out = tmp_path / "cli"
    code = main(
        ["eval", "convert", "refcoco", "--refs", str(refs), "--instances", str(instances), "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "val: 2 examples" in printed and "skipped 1: empty box" in printed
    assert read_rec_examples(out / "testA.jsonl")[0].image == "COCO_train2014_000000000001.jpg"

    # a pickle that would construct an object (run code) is refused, not executed
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps([{"x": Path("/")}]))
    with pytest.raises(EvalDataError, match="only lists, dicts"):
        convert_refcoco(evil, instances, tmp_path / "evil")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    code = main(
        ["eval", "convert", "refcoco", "--refs", str(refs), "--instances", str(bad), "--out", str(out)]
    )
    assert code == 2
    assert "not a COCO instances file" in capsys.readouterr().err


SENTENCES = {
    "1000": [
        "[/EN#18/people A child] in [/EN#19/clothing a pink dress] is climbing up "
        "[/EN#20/other a set of stairs] in [/EN#21/scene an entry way] .",
        "[/EN#22/people/animals Two   dogs] play near [/EN#0/notvisual something] .",
    ],
    "2000": ["[/EN#5/people A man] sleeps ."],
}
ANNOTATIONS = {
    "1000": """<annotation><filename>1000.jpg</filename>
<size><width>500</width><height>333</height><depth>3</depth></size>
<object><name>18</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>110</xmax><ymax>220</ymax></bndbox></object>
<object><name>19</name><name>18</name>
  <bndbox><xmin>30</xmin><ymin>60</ymin><xmax>90</xmax><ymax>200</ymax></bndbox></object>
<object><name>20</name><bndbox><xmin>200</xmin><ymin>100</ymin><xmax>300</xmax><ymax>330</ymax></bndbox></object>
<object><name>21</name><scene>1</scene></object>
<object><name>22</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>
<object><name>22</name><bndbox><xmin>300</xmin><ymin>10</ymin><xmax>400</xmax><ymax>90</ymax></bndbox></object>
</annotation>""",
    "2000": """<annotation><size><width>320</width><height>240</height></size>
<object><name>5</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object>
</annotation>""",
}


@pytest.fixture()
def flickr(tmp_path: Path) -> tuple[Path, Path]:
    sentences, annotations = tmp_path / "Sentences", tmp_path / "Annotations"
    sentences.mkdir()
    annotations.mkdir()
    for image_id, lines in SENTENCES.items():
        (sentences / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
        (annotations / f"{image_id}.xml").write_text(ANNOTATIONS[image_id])
    return sentences, annotations


def test_flickr_sentence_markup() -> None:
    assert parse_sentence(SENTENCES["1000"][1]) == [("22", "Two dogs"), ("0", "something")]


def test_flickr30k_phrases_with_union_or_first_box(flickr: tuple[Path, Path], tmp_path: Path) -> None:
    sentences, annotations = flickr
    stats = convert_flickr30k(sentences, annotations, tmp_path / "union", image_prefix="flickr30k-images/")
    assert stats.written == {"all": 5}
    # the scene entity and the non-visual phrase have no box
    assert stats.skipped == {"phrase without a box": 2}
    examples = {e.id: e for e in read_rec_examples(tmp_path / "union" / "all.jsonl")}
    assert list(examples) == ["1000/0/0", "1000/0/1", "1000/0/2", "1000/1/0", "2000/0/0"]
    child = examples["1000/0/0"]
    # entity 18 has its own box and shares the second one with entity 19: union of both
    assert (child.expression, child.box) == ("A child", (10.0, 20.0, 110.0, 220.0))
    assert examples["1000/0/1"].box == (30.0, 60.0, 90.0, 200.0)
    dogs = examples["1000/1/0"]
    assert (dogs.expression, dogs.box) == ("Two dogs", (5.0, 5.0, 400.0, 90.0))
    assert (dogs.image, dogs.width, dogs.height) == ("flickr30k-images/1000.jpg", 500, 333)

    split_list = tmp_path / "val.txt"
    split_list.write_text("1000\n")
    first = convert_flickr30k(
        sentences, annotations, tmp_path / "first", split_lists=[split_list], multi_box="first"
    )
    assert first.written == {"val": 4}
    by_id = {e.id: e for e in read_rec_examples(tmp_path / "first" / "val.jsonl")}
    assert by_id["1000/1/0"].box == (5.0, 5.0, 50.0, 40.0)
    assert by_id["1000/0/0"].box == (10.0, 20.0, 110.0, 220.0)


def test_flickr30k_cli(flickr: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sentences, annotations = flickr
    out = tmp_path / "out"
    args = ["eval", "convert", "flickr30k", "--sentences", str(sentences), "--annotations", str(annotations)]
    assert main([*args, "--out", str(out), "--multi-box", "first"]) == 0
    assert "all: 5 examples" in capsys.readouterr().out
    (annotations / "2000.xml").write_text("<annotation><object/></annotation>")
    assert main([*args, "--out", str(out)]) == 2
    assert "2000.xml: not a Flickr30k Entities annotation" in capsys.readouterr().err
