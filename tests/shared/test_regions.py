"""Region building: the paper's rule (seed object, merge nearest until > 4, union box, >= 90 % inside)."""

from __future__ import annotations

import itertools
import random

import pytest
from spr.shared.errors import SprError
from spr.shared.regions import RegionConfig, build_regions
from spr.shared.schemas import AnnotatedObject, ImageRef, RegionTask

Box = tuple[float, float, float, float]


def _objects(boxes: list[Box]) -> list[AnnotatedObject]:
    return [AnnotatedObject(label=f"obj{i}", box=box) for i, box in enumerate(boxes)]


def _random_scene(rng: random.Random, count: int, size: int = 400) -> list[AnnotatedObject]:
    boxes: list[Box] = []
    for _ in range(count):
        x, y = rng.uniform(0, size - 60), rng.uniform(0, size - 60)
        boxes.append((x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)))
    return _objects(boxes)


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _inside(box: Box, region: Box) -> float:
    w = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    h = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    return w * h / ((box[2] - box[0]) * (box[3] - box[1]))


IMAGE = ImageRef(path="images/a.png", width=400, height=400)


def test_reproducible_for_a_seed_and_independent_of_call_order() -> None:
    objects = _random_scene(random.Random(1), 12)
    other = ImageRef(path="images/b.png", width=400, height=400)
    config = RegionConfig(regions_per_image=3)
    first = build_regions(IMAGE, objects, config=config, seed=7, source="s")
    build_regions(other, objects, config=config, seed=7, source="s")  # no state carried between calls
    again = build_regions(IMAGE, objects, config=config, seed=7, source="s")
    assert [t.model_dump() for t in first] == [t.model_dump() for t in again]
    assert len(first) == 3


def test_seed_and_image_path_change_the_sample() -> None:
    rng = random.Random(2)
    scenes = [_random_scene(rng, 12) for _ in range(10)]
    by_seed = {seed: [build_regions(IMAGE, s, seed=seed)[0].region for s in scenes] for seed in (0, 1)}
    assert by_seed[0] != by_seed[1]
    other = ImageRef(path="images/other.png", width=400, height=400)
    assert [build_regions(other, s)[0].region for s in scenes] != by_seed[0]


def _greedy_union(boxes: list[Box], start: int, size: int) -> Box:
    """Reference merge rule: nearest centre to the current union box's centre, lowest index on ties."""
    group = [start]
    while len(group) < size:
        ux1, uy1, ux2, uy2 = _union([boxes[i] for i in group])
        cx, cy = (ux1 + ux2) / 2, (uy1 + uy2) / 2
        rest = [i for i in range(len(boxes)) if i not in group]
        group.append(
            min(
                rest,
                key=lambda i: (
                    ((boxes[i][0] + boxes[i][2]) / 2 - cx) ** 2 + ((boxes[i][1] + boxes[i][3]) / 2 - cy) ** 2,
                    i,
                ),
            )
        )
    return _union([boxes[i] for i in group])


@pytest.mark.parametrize("scene_seed", range(8))
def test_regions_follow_the_rule(scene_seed: int) -> None:
    objects = _random_scene(random.Random(scene_seed), random.Random(scene_seed).randint(5, 14))
    boxes = [o.box for o in objects]
    tasks = build_regions(
        IMAGE, objects, config=RegionConfig(regions_per_image=4), seed=scene_seed, source="x"
    )
    assert 1 <= len(tasks) <= 4
    greedy = {_greedy_union(boxes, start, 5) for start in range(len(boxes))}
    for task in tasks:
        # the region is the union of a group of 5 (> 4) objects grown by nearest centre from some seed
        assert task.region in greedy
        assert any(_union(list(group)) == task.region for group in itertools.combinations(boxes, 5))
        # its GT is exactly the objects with >= 90 % of their area inside
        expected = [o for o in objects if _inside(o.box, task.region) >= 0.9]
        assert task.objects == expected
        assert len(task.objects) >= 5
        assert task.task_id == RegionTask.make_id("x", IMAGE.path, task.region)
        assert task.image == IMAGE and task.source == "x"
    assert len({t.region for t in tasks}) == len(tasks)


def test_two_far_clusters_give_exactly_their_unions() -> None:
    cluster_a = [(0.0, 0.0, 10.0, 10.0), (15, 0, 25, 10), (0, 15, 10, 25), (15, 15, 25, 25), (30, 5, 40, 15)]
    cluster_b = [(b[0] + 300, b[1] + 300, b[2] + 300, b[3] + 300) for b in cluster_a]
    objects = _objects([*cluster_a, *cluster_b])
    for seed in range(5):
        # every seed object yields its own cluster; ten seeds give two distinct regions, not ten
        tasks = build_regions(IMAGE, objects, config=RegionConfig(regions_per_image=10), seed=seed)
        assert {t.region for t in tasks} == {(0.0, 0.0, 40.0, 25.0), (300.0, 300.0, 340.0, 325.0)}
        for task in tasks:
            assert len(task.objects) == 5


def test_ninety_percent_rule_counts_unmerged_objects() -> None:
    # min_objects=1: each region is one seed object's box, so membership is the 90 % rule alone.
    big = (0.0, 0.0, 100.0, 100.0)
    inside = (10.0, 10.0, 20.0, 20.0)
    exactly_90 = (91.0, 30.0, 101.0, 40.0)  # 9 of 10 columns inside big
    only_85 = (91.5, 50.0, 101.5, 60.0)
    half = (95.0, 70.0, 105.0, 80.0)
    objects = _objects([big, inside, exactly_90, only_85, half])
    tasks = build_regions(IMAGE, objects, config=RegionConfig(min_objects=1, regions_per_image=5))
    by_region = {t.region: [o.box for o in t.objects] for t in tasks}
    assert by_region[big] == [big, inside, exactly_90]
    assert by_region[inside] == [inside]
    stricter = build_regions(
        IMAGE, objects, config=RegionConfig(min_objects=1, regions_per_image=5, inside_fraction=0.95)
    )
    assert {t.region: [o.box for o in t.objects] for t in stricter}[big] == [big, inside]


def test_images_with_fewer_than_five_objects_are_skipped() -> None:
    objects = _random_scene(random.Random(3), 4)
    assert build_regions(IMAGE, objects) == []
    assert build_regions(IMAGE, []) == []
    assert len(build_regions(IMAGE, objects, config=RegionConfig(min_objects=4))) == 1


def test_max_objects_drops_crowded_regions() -> None:
    # A 4x4 grid (any 5 merged objects span a rectangle holding more) and, far away, a row of 5.
    grid = [(x * 12.0, y * 12.0, x * 12.0 + 10, y * 12.0 + 10) for x in range(4) for y in range(4)]
    row = [(200.0 + x * 12.0, 300.0, 210.0 + x * 12.0, 310.0) for x in range(5)]
    objects = _objects(grid + row)
    unbounded = build_regions(IMAGE, objects, config=RegionConfig(regions_per_image=21))
    assert max(len(t.objects) for t in unbounded) > 5
    bounded = build_regions(IMAGE, objects, config=RegionConfig(regions_per_image=21, max_objects=5))
    assert [t.region for t in bounded] == [(200.0, 300.0, 258.0, 310.0)]


def test_region_is_clipped_to_the_image() -> None:
    image = ImageRef(path="x.png", width=50, height=50)
    objects = _objects(
        [(0.0, 0.0, 10.0, 10.0), (12, 0, 22, 10), (24, 0, 34, 10), (36, 0, 46, 10), (40, 0, 60, 10)]
    )
    (task,) = build_regions(image, objects)
    assert task.region == (0.0, 0.0, 50.0, 10.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_objects": 0}, "min_objects"),
        ({"inside_fraction": 0.0}, "inside_fraction"),
        ({"inside_fraction": 1.5}, "inside_fraction"),
        ({"regions_per_image": 0}, "regions_per_image"),
        ({"max_objects": 3}, "max_objects"),
    ],
)
def test_bad_config_is_a_user_error_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(SprError, match=field):
        RegionConfig(**kwargs)  # type: ignore[arg-type]


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(SprError, match="seed"):
        build_regions(IMAGE, _random_scene(random.Random(0), 6), seed=-1)


def test_whole_image_regions_hold_every_object() -> None:
    objects = _random_scene(random.Random(5), 2)
    config = RegionConfig(min_objects=1, whole_image=True)
    [task] = build_regions(IMAGE, objects, config=config, seed=1, source="s")
    assert task.region == (0.0, 0.0, 400.0, 400.0)
    assert task.objects == objects
    assert task.task_id == RegionTask.make_id("s", IMAGE.path, task.region)
    # min_objects still skips images with fewer objects; other sources give other ids.
    assert build_regions(IMAGE, objects, config=RegionConfig(min_objects=3, whole_image=True)) == []
    [other] = build_regions(IMAGE, objects, config=config, seed=1, source="round-2")
    assert other.task_id != task.task_id
