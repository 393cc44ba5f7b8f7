"""Dataset readers (COCO, ODVG) and the synthetic shapes dataset."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from spr.shared.datasets import DatasetError
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.odvg import load_odvg
from spr.shared.datasets.synthetic import COLOURS, category_names, draw_scene, write_synthetic_dataset

# --- COCO ---------------------------------------------------------------------------------------------


def _write_coco(path: Path) -> Path:
    document: dict[str, Any] = {
        "images": [
            {"id": 7, "file_name": "train/a.jpg", "width": 100, "height": 80},
            {"id": 3, "file_name": "train/b.jpg", "width": 50, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [90, 70, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1},
            {"id": 4, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
            {"id": 5, "image_id": 7, "category_id": 2, "bbox": [200, 5, 10, 10], "area": 100, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "red chair"}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_coco_boxes_labels_and_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    annotations = _write_coco(tmp_path / "ann.json")
    with caplog.at_level(logging.WARNING):
        items = list(load_coco(annotations))
    assert [(image.path, image.width, image.height) for image, _ in items] == [
        ("train/a.jpg", 100, 80),
        ("train/b.jpg", 50, 50),
    ]
    objects = items[0][1]
    # xywh -> xyxy; the second box is clipped to the 100 x 80 image; crowd, empty and outside skipped
    assert [(o.label, o.box) for o in objects] == [
        ("red chair", (10.0, 20.0, 40.0, 60.0)),
        ("cup", (90.0, 70.0, 100.0, 80.0)),
    ]
    assert items[1][1] == []  # an image without annotations is still yielded
    assert "skipped 2 empty or out-of-image boxes" in caplog.text


def test_coco_paths_relative_to_the_data_root(tmp_path: Path) -> None:
    annotations = _write_coco(tmp_path / "annotations" / "ann.json")
    images_root = tmp_path / "coco" / "images"
    images_root.mkdir(parents=True)
    paths = [image.path for image, _ in load_coco(annotations, images_root, data_root=tmp_path)]
    assert paths == ["coco/images/train/a.jpg", "coco/images/train/b.jpg"]
    assert next(image.path for image, _ in load_coco(annotations, images_root)) == "train/a.jpg"
    with pytest.raises(DatasetError, match="not inside the data root"):
        load_coco(annotations, images_root, data_root=tmp_path / "elsewhere")


def test_coco_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_coco(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_coco(broken)
    not_coco = tmp_path / "list.json"
    not_coco.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a COCO detection file"):
        load_coco(not_coco)
    bad_category = tmp_path / "cat.json"
    bad_category.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                "annotations": [{"id": 9, "image_id": 1, "category_id": 5, "bbox": [0, 0, 5, 5]}],
                "categories": [],
            }
        )
    )
    with pytest.raises(DatasetError, match="category_id 5"):
        list(load_coco(bad_category))


# --- ODVG ---------------------------------------------------------------------------------------------


def test_odvg_reads_detection_records(tmp_path: Path) -> None:
    records = [
        {
            "filename": "imgs/1.jpg",
            "height": 60,
            "width": 80,
            "detection": {
                "instances": [
                    {"bbox": [1, 2, 30, 40], "label": 0, "category": "dog"},
                    {"bbox": [70, 50, 90, 70], "label": 1},  # no category: from the label map; clipped
                    {"bbox": [85, 5, 95, 10], "label": 0, "category": "dog"},  # outside: skipped
                ]
            },
        },
        {"filename": "imgs/2.jpg", "height": 10, "width": 10, "detection": {"instances": []}},
    ]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    items = list(load_odvg(jsonl, label_map={1: "cat"}))
    assert [image.path for image, _ in items] == ["imgs/1.jpg", "imgs/2.jpg"]
    assert [(o.label, o.box) for o in items[0][1]] == [
        ("dog", (1.0, 2.0, 30.0, 40.0)),
        ("cat", (70.0, 50.0, 80.0, 60.0)),
    ]
    with pytest.raises(DatasetError, match="label map"):
        list(load_odvg(jsonl))


def test_odvg_errors_name_the_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "grounding.jsonl"
    good = {"filename": "a.jpg", "height": 10, "width": 10, "detection": {"instances": []}}
    grounding = {"filename": "b.jpg", "height": 10, "width": 10, "grounding": {"caption": "x", "regions": []}}
    jsonl.write_text(json.dumps(good) + "\n" + json.dumps(grounding) + "\n")
    with pytest.raises(DatasetError, match=r"grounding\.jsonl:2: .*'detection'"):
        list(load_odvg(jsonl))
    with pytest.raises(DatasetError, match="not found"):
        load_odvg(tmp_path / "missing.jsonl")


# --- synthetic ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=6, seed=3, size=(200, 160))


def test_synthetic_writes_pngs_and_coco(synthetic: Path) -> None:
    assert synthetic.name == "annotations.json"
    items = list(load_coco(synthetic))
    assert len(items) == 6
    for image, objects in items:
        assert image.path.startswith("images/") and image.path.endswith(".png")
        with Image.open(synthetic.parent / image.path) as picture:
            assert picture.format == "PNG"
            assert picture.size == (200, 160) == (image.width, image.height)
        assert 5 <= len(objects) <= 9
        assert all(o.label in category_names() for o in objects)


def test_synthetic_annotations_are_exact(synthetic: Path) -> None:
    document = json.loads(synthetic.read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    files = {i["id"]: i["file_name"] for i in document["images"]}
    squares = 0
    for ann in document["annotations"]:
        colour_name, shape = names[ann["category_id"]].split(" ")
        colour = np.array(COLOURS[colour_name], dtype=np.uint8)
        with Image.open(synthetic.parent / files[ann["image_id"]]) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        x, y, w, h = ann["bbox"]
        crop = pixels[y : y + h, x : x + w]
        painted = np.all(crop == colour, axis=-1)
        # tight box: the shape's pixels touch all four sides of the box, and all of them are counted
        assert painted[0].any() and painted[-1].any() and painted[:, 0].any() and painted[:, -1].any()
        assert int(painted.sum()) == ann["area"]
        if shape == "square":
            squares += 1
            assert painted.all()
            assert tuple(pixels[y + h // 2, x + w // 2]) == COLOURS[colour_name]
    assert squares > 0


def test_synthetic_is_deterministic(tmp_path: Path, synthetic: Path) -> None:
    again = write_synthetic_dataset(tmp_path / "again", images=6, seed=3, size=(200, 160))
    assert again.read_bytes() == synthetic.read_bytes()
    for png in sorted((synthetic.parent / "images").glob("*.png")):
        assert (again.parent / "images" / png.name).read_bytes() == png.read_bytes()
    other = write_synthetic_dataset(tmp_path / "other", images=2, seed=4, size=(200, 160))
    assert (other.parent / "images" / "000000.png").read_bytes() != (
        synthetic.parent / "images" / "000000.png"
    ).read_bytes()


def test_draw_scene_is_what_the_dataset_writes(synthetic: Path) -> None:
    # image i of a dataset is draw_scene on the generator seeded (seed, i): a training loop that draws
    # scenes on the fly sees the same kind of picture as the files
    rng = np.random.default_rng([3, 0])
    picture, shapes = draw_scene(rng, 200, 160, int(rng.integers(5, 10)))
    with Image.open(synthetic.parent / "images" / "000000.png") as written:
        assert np.array_equal(np.asarray(written.convert("RGB")), np.asarray(picture))
    _, objects = next(iter(load_coco(synthetic)))
    assert [(o.label, o.box) for o in objects] == [(name, tuple(map(float, box))) for name, box, _ in shapes]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"images": 0}, "images"),
        ({"images": 1, "min_objects": 6, "max_objects": 5}, "min_objects"),
        ({"images": 1, "size": (16, 100)}, "size"),
        ({"images": 1, "seed": -1}, "seed"),
    ],
)
def test_synthetic_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(DatasetError, match=field):
        write_synthetic_dataset(tmp_path, **kwargs)


def test_distinct_colours_never_repeat_a_colour_in_a_scene(tmp_path: Path) -> None:
    for seed in range(20):
        _, shapes = draw_scene(np.random.default_rng(seed), 128, 128, 6, distinct_colours=True)
        colours = [name.split(" ")[0] for name, _, _ in shapes]
        assert sorted(colours) == sorted(COLOURS)
    with pytest.raises(DatasetError, match="at most 6"):
        draw_scene(np.random.default_rng(0), 128, 128, 7, distinct_colours=True)
    path = write_synthetic_dataset(tmp_path, images=8, min_objects=2, max_objects=2, distinct_colours=True)
    for _, objects in load_coco(path):
        assert len({obj.label.split(" ")[0] for obj in objects}) == 2


def test_synthetic_crowded_image_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot fit"):
        write_synthetic_dataset(tmp_path, images=1, min_objects=60, max_objects=60, size=(32, 32))
