"""Limits on the work of one request or queued group, and inputs that used to give 500s: each refusal is
a 422 (or 503) naming the field and the setting, counted on /metrics by reason, in both modes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from scorer_fixtures import CUP, DOG, LOOSE_CUP, candidate_group, grounded, score_request
from spr.scorer.app import create_app
from spr.scorer.images import ImageStore, decode_for_models
from spr.scorer.limits import BusyError, PixelBudget
from spr.scorer.loading import load_scorer
from spr.scorer.scoring import Scorer, detections_to_original
from spr.scorer.settings import ScorerSettings
from spr.scorer.telemetry import ScorerMetrics
from spr.scorer.worker import run_scorer_worker
from spr.shared.queue import STREAM_CANDIDATES, Queue, QueueConfig
from spr.shared.schemas import AnnotatedObject

Settings = Callable[..., ScorerSettings]

TEXTS = [
    ("best", grounded("ferret", "a cup", LOOSE_CUP) + " and " + grounded("ferret", "a dog", DOG)),
    ("ok", grounded("ferret", "a cup", CUP)),
]
LOC = {"lambda": 0}


@pytest.fixture()
def small_limits(make_settings: Settings) -> Iterator[TestClient]:
    """Localization-only app with 3 objects and 12 box pairs at most."""
    settings = make_settings(scorer_max_objects=3, scorer_max_box_pairs=12)
    with TestClient(create_app(settings)) as client:
        yield client


def _objects(n: int) -> list[dict[str, Any]]:
    return [{"label": f"o{i}", "box": [10.0 + i % 50, 10.0, 60.0 + i % 50, 50.0]} for i in range(n)]


def _refused(client: TestClient) -> str:
    return client.get("/metrics").text


def test_too_many_objects_is_a_422_naming_the_setting(small_limits: TestClient) -> None:
    response = small_limits.post("/score", json=score_request(TEXTS, objects=_objects(4), options=LOC))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "objects"
    assert "4 ground-truth objects: at most 3" in error["message"]
    assert "SPR_SCORER_MAX_OBJECTS" in error["message"]
    assert 'spr_scorer_refused_total{reason="too_many_objects",source="http"} 1.0' in _refused(small_limits)


def test_objects_times_boxes_is_bounded(small_limits: TestClient) -> None:
    # 3 objects x (2 + 1 + 2) boxes = 15 pairs > 12; with 2 candidates (3 boxes) it is 9: fine.
    many = [*TEXTS, ("more", TEXTS[0][1])]
    response = small_limits.post("/score", json=score_request(many, objects=_objects(3), options=LOC))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "candidates"
    assert "3 objects x 5 boxes" in error["message"] and "SPR_SCORER_MAX_BOX_PAIRS" in error["message"]
    ok = small_limits.post("/score", json=score_request(TEXTS, objects=_objects(3), options=LOC))
    assert ok.status_code == 200, ok.text
    assert 'reason="too_many_box_pairs",source="http"} 1.0' in _refused(small_limits)


def test_nul_byte_in_the_image_path_is_a_422(small_limits: TestClient) -> None:
    response = small_limits.post("/score", json=score_request(TEXTS, image={"path": "img.png\x00.txt"}))
    assert response.status_code == 422, response.text
    field = response.json()["error"]["fields"][0]
    assert field["field"] == "image.path" and "NUL byte" in field["message"]


HUGE = "9" * 5000
HUGE_NUMBER_TEXTS = {
    "ferret": f"a cup [{HUGE}, 100, 250, 500]",
    "qwen2vl": f"<|object_ref_start|>a cup<|object_ref_end|><|box_start|>({HUGE},100),(250,500)<|box_end|>",
    "qwen3vl": f'{{"bbox_2d": [{HUGE}, 100, 250, 500], "label": "a cup"}}',
    "internvl": f"<ref>a cup</ref><box>[[{HUGE}, 100, 250, 500]]</box>",
    "kosmos2": f"<phrase>a cup</phrase><object><patch_index_{HUGE}><patch_index_0005></object>",
    "qwen25vl": f'{{"bbox_2d": [{HUGE}, 10, 50, 50], "label": "a cup"}}',
}


@pytest.mark.parametrize("fmt", sorted(HUGE_NUMBER_TEXTS))
def test_a_number_over_the_int_digit_limit_is_a_parse_problem(small_limits: TestClient, fmt: str) -> None:
    body = score_request([("huge", HUGE_NUMBER_TEXTS[fmt]), TEXTS[1]], fmt=fmt, options=LOC)
    if fmt == "qwen25vl":
        body["resized_size"] = {"width": 200, "height": 100}
    if fmt != "ferret":
        body["candidates"][1]["text"] = "a cup"
    response = small_limits.post("/score", json=body)
    assert response.status_code == 200, response.text
    huge = response.json()["candidates"][0]
    assert huge["phrases"] == [] and huge["localization"]["score"] == 0.0
    assert [p["kind"] for p in huge["problems"]] == ["malformed_box"]
    assert "5000 digits" in huge["problems"][0]["message"]


@pytest.mark.parametrize(("where", "box"), [("right of", [250, 10, 300, 50]), ("below", [10, 150, 50, 190])])
def test_a_gt_box_outside_the_image_is_a_422(small_limits: TestClient, where: str, box: list[float]) -> None:
    body = score_request(TEXTS, options=LOC)
    body["objects"][1]["box"] = box
    response = small_limits.post("/score", json=body)
    assert response.status_code == 422, response.text
    field = response.json()["error"]["fields"][0]
    assert field["field"] == "objects.1.box" and "entirely outside the 200x100 image" in field["message"]


def test_the_queue_applies_the_same_limits(make_settings: Settings, redis_url: str) -> None:
    settings = make_settings(
        redis_url=redis_url,
        scorer_lambda=0.0,
        queue_block_ms=50,
        scorer_max_candidates=2,
        scorer_max_objects=2,
    )
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    three = candidate_group("three", [text for _, text in TEXTS] + ["a cup"])
    crowded = candidate_group("crowded", [text for _, text in TEXTS])
    crowded.task.objects = [*crowded.task.objects, AnnotatedObject(label="cat", box=(1.0, 1.0, 9.0, 9.0))]
    outside = candidate_group("outside", [text for _, text in TEXTS])
    outside.task.objects = [AnnotatedObject(label="cat", box=(300.0, 1.0, 390.0, 9.0))]
    for group in (three, crowded, outside, candidate_group("fine", [text for _, text in TEXTS])):
        queue.publish(STREAM_CANDIDATES, group.group_id, group)
    metrics = ScorerMetrics()

    stats = run_scorer_worker(
        settings, scorer=load_scorer(settings), queue=queue, metrics=metrics, max_items=4
    )

    assert (stats.processed, stats.dead_lettered) == (1, 3)
    dead = {d.item_id: d.error for d in queue.dead_letters()}
    assert "3 candidates: at most 2" in dead["g-three"] and "SPR_SCORER_MAX_CANDIDATES" in dead["g-three"]
    assert "3 ground-truth objects: at most 2" in dead["g-crowded"]
    assert "objects.0.box" in dead["g-outside"] and "outside" in dead["g-outside"]
    text = generate_latest(metrics.registry).decode()
    assert 'spr_scorer_refused_total{reason="too_many_candidates",source="queue"} 1.0' in text
    assert 'spr_scorer_refused_total{reason="too_many_objects",source="queue"} 1.0' in text


def test_refusals_are_counted_by_reason(make_settings: Settings) -> None:
    settings = make_settings(scorer_auth="api_key", scorer_api_key="k" * 16, scorer_max_body_bytes=5_000)
    with TestClient(create_app(settings)) as client:
        assert client.post("/score", json=score_request(TEXTS, options=LOC)).status_code == 401
        key = {"x-api-key": "k" * 16}
        big = score_request([("a", "x" * 6_000)], options=LOC)
        assert client.post("/score", json=big, headers=key).status_code == 413
        text = client.get("/metrics", headers=key).text
    assert 'spr_scorer_refused_total{reason="auth",source="http"} 1.0' in text
    assert 'spr_scorer_refused_total{reason="too_large",source="http"} 1.0' in text


# -- the pixel budget ---------------------------------------------------------------------------------


def test_pixel_budget_waits_in_order_and_refuses_after_the_wait() -> None:
    async def scenario() -> list[str]:
        budget = PixelBudget(100, wait_s=0.2)
        events: list[str] = []
        release = asyncio.Event()

        async def holder(name: str, pixels: int) -> None:
            async with budget.hold(pixels):
                events.append(f"{name} in")
                await release.wait()
            events.append(f"{name} out")

        first = asyncio.create_task(holder("a", 80))
        await asyncio.sleep(0)  # let it take the budget (no timing involved: one loop turn)
        with pytest.raises(BusyError) as busy:
            async with budget.hold(30):
                pass
        assert busy.value.retry_after_s == 1 and "SPR_SCORER_MAX_PIXELS_IN_FLIGHT=100" in busy.value.message
        assert budget.in_use == 80
        budget.wait_s = 10.0
        second = asyncio.create_task(holder("b", 50))
        await asyncio.sleep(0)
        assert events == ["a in"]
        release.set()
        await asyncio.gather(first, second)
        assert budget.in_use == 0
        return events

    assert asyncio.run(scenario()) == ["a in", "a out", "b in", "b out"]


def test_shrinking_a_hold_lets_the_next_image_in() -> None:
    async def scenario() -> None:
        budget = PixelBudget(100, wait_s=5.0)
        async with budget.hold(90) as held:
            waiter = asyncio.create_task(_take(budget, 50))
            await asyncio.sleep(0)
            assert not waiter.done()
            held.shrink(10)  # the full-size bitmap is gone, a small copy remains
            await waiter
            assert budget.in_use == 10
        assert budget.in_use == 0

    asyncio.run(scenario())


async def _take(budget: PixelBudget, pixels: int) -> None:
    async with budget.hold(pixels):
        pass


def test_exhausted_pixel_budget_is_a_503_with_retry_after(make_settings: Settings, clip: Any) -> None:
    settings = make_settings(
        scorer_max_pixels_in_flight=50_000, scorer_max_image_pixels=50_000, scorer_pixel_wait_s=0.0
    )
    with TestClient(create_app(settings, scorer=Scorer(semantic=clip))) as client:
        budget: PixelBudget = client.app.state.serving.batched.pixel_budget  # type: ignore[attr-defined]
        budget.in_use = budget.capacity  # another request holds it all
        response = client.post("/score", json=score_request(TEXTS))
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "busy"
        budget.in_use = 0
        assert client.post("/score", json=score_request(TEXTS)).status_code == 200
        assert 'spr_scorer_refused_total{reason="pixel_budget",source="http"} 1.0' in _refused(client)


# -- downscaling once after decoding ------------------------------------------------------------------


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_big_images_are_downscaled_once_and_boxes_map_back(tmp_path: Path, mode: str) -> None:
    (tmp_path / "big.png").write_bytes(_png(3000, 1500, mode))
    store = ImageStore(tmp_path, max_image_bytes=10_000_000, max_image_pixels=10_000_000)
    original = store.open_path("big.png")
    decoded = decode_for_models(original, max_side=1000)
    assert decoded.rgb.size == (1000, 500) and decoded.rgb.mode == "RGB"
    assert decoded.to_model((300.0, 150.0, 900.0, 600.0)) == pytest.approx((100.0, 50.0, 300.0, 200.0))
    back = detections_to_original({"cup": [(100.0, 50.0, 300.0, 200.0)]}, decoded)
    assert back == {"cup": [pytest.approx((300.0, 150.0, 900.0, 600.0))]}
    with pytest.raises(ValueError, match="closed image"):
        original.getpixel((0, 0))  # the full-size bitmap is freed
    small = decode_for_models(store.open_path("big.png"), max_side=4000)
    assert small.rgb.size == (3000, 1500) and (small.scale_x, small.scale_y) == (1.0, 1.0)


def test_a_downscaled_image_scores_like_the_original_region(make_settings: Settings, clip: Any) -> None:
    # One 2400 x 1200 image, the models see 1200 x 600: the region and object boxes map with it.
    from PIL import Image, ImageDraw

    root = make_settings().data_root
    image = Image.new("RGB", (2400, 1200), (30, 60, 200))
    ImageDraw.Draw(image).rectangle((120, 120, 600, 600), fill=(230, 30, 30))
    image.save(root / "wide.png")
    scores = []
    for side in (1200, 2400):
        settings = make_settings(scorer_decode_max_side=side)
        with TestClient(create_app(settings, scorer=Scorer(semantic=clip, decode_max_side=side))) as client:
            body = score_request(
                [("a", "a red cup [50, 100, 250, 500]")],
                image={"path": "wide.png"},
                region=[0, 0, 1200, 1200],
                objects=[{"label": "cup", "box": [120, 120, 600, 600]}],
            )
            response = client.post("/score", json=body)
            assert response.status_code == 200, response.text
            scores.append(response.json()["candidates"][0]["semantic"]["score"])
    assert scores[0] == pytest.approx(scores[1], abs=0.02)


def test_bodies_validated_off_the_loop_keep_their_openapi_schema(small_limits: TestClient) -> None:
    spec = small_limits.get("/openapi.json").json()
    for path, schema in (("/score", "ScoreRequest"), ("/get_reward", "GetRewardRequest")):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        assert "properties" in spec["components"]["schemas"][schema]
    refs = {ref for ref in _refs(spec) if ref.startswith("#/components/schemas/")}
    assert {ref.rsplit("/", 1)[1] for ref in refs} <= set(spec["components"]["schemas"])


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_no_cpu_work_runs_on_the_event_loop(
    small_limits: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the size: validation, image opening, parsing + IoU (plan) and finish run on the CPU pool.
    import threading

    from spr.shared.scoring_api import ScoreRequest

    seen: dict[str, str] = {}

    def spy(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            seen[name] = threading.current_thread().name
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(Scorer, "plan", spy("plan", Scorer.plan))
    monkeypatch.setattr(Scorer, "finish", spy("finish", Scorer.finish))
    # open_path_keyed: open_path with the file's identity, for the decoded-image cache.
    monkeypatch.setattr(ImageStore, "open_path_keyed", spy("open_path", ImageStore.open_path_keyed))
    monkeypatch.setattr(
        ScoreRequest, "model_validate_json", spy("validate", ScoreRequest.model_validate_json)
    )
    response = small_limits.post("/score", json=score_request(TEXTS, options=LOC))
    assert response.status_code == 200, response.text
    assert set(seen) == {"plan", "finish", "open_path", "validate"}
    assert all(thread.startswith("spr-cpu") for thread in seen.values()), seen


def test_get_reward_applies_the_object_limit(small_limits: TestClient) -> None:
    import json

    from spr.shared.reward_api import RewardTask
    from spr.shared.scoring_api import ImageInput

    task = RewardTask(
        image=ImageInput(path="img.png"),
        region=(0.0, 0.0, 160.0, 100.0),
        objects=[AnnotatedObject(label=o["label"], box=tuple(o["box"])) for o in _objects(4)],
        format="ferret",
    )
    label = json.loads(task.to_json())
    label["options"] = {"lambda": 0.0}
    body = {"query": ["a cup [50, 100, 250, 500]"], "prompts": [""], "labels": [json.dumps(label)]}
    response = small_limits.post("/get_reward", json=body)
    assert response.status_code == 422, response.text
    field = response.json()["error"]["fields"][0]
    assert field["field"] == "labels.0.objects" and "SPR_SCORER_MAX_OBJECTS" in field["message"]
    assert 'spr_scorer_refused_total{reason="too_many_objects",source="http"} 1.0' in _refused(small_limits)
