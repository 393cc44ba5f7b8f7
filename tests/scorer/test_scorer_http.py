"""POST /score and friends through the real app (lifespan, middleware, handlers) and a real server."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from scorer_fixtures import CUP, DOG, FAR_DOG, LOOSE_CUP, grounded, image_base64, png_base64, score_request
from spr.scorer.app import create_app
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings
from spr.scorer.thread_server import ServerThread

Settings = Callable[..., ScorerSettings]

TEXTS = [
    ("best", grounded("ferret", "a cup", LOOSE_CUP) + " and " + grounded("ferret", "a dog", DOG)),
    ("worst", grounded("ferret", "a dog", FAR_DOG)),
    ("ok", grounded("ferret", "a cup", CUP)),
]


@pytest.fixture()
def client(make_settings: Settings, clip: SemanticScorer) -> Iterator[TestClient]:
    """The app with the tiny CLIP and small limits: 4 candidates, 50 kB images, 100 kpixels, 200 kB bodies."""
    settings = make_settings(
        scorer_max_candidates=4,
        scorer_max_image_bytes=50_000,
        scorer_max_image_pixels=100_000,
        scorer_max_body_bytes=200_000,
    )
    with TestClient(create_app(settings, scorer=Scorer(semantic=clip))) as test_client:
        yield test_client


@pytest.fixture()
def loc_client(make_settings: Settings) -> Iterator[TestClient]:
    """The app without a semantic model (SPR_SCORER_SEMANTIC_MODEL=none)."""
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


def test_score_returns_scores_and_pair(client: TestClient) -> None:
    response = client.post("/score", json=score_request(TEXTS))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image_size"] == {"width": 200, "height": 100}
    best, _worst, ok = body["candidates"]
    assert best["localization"]["score"] == pytest.approx(0.9)
    assert best["refined"]["localization"]["score"] == pytest.approx(1.0)
    assert set(best["semantic"]) == {"crop", "local", "score"}
    assert best["score"] == pytest.approx(0.8 * best["semantic"]["score"] + 0.2 * 0.9)
    assert best["phrases"][0]["boxes"] == [[10.0, 10.0, 60.0, 50.0]]
    assert ok["refined"]["text"] == TEXTS[2][1]
    pair = body["pair"]
    assert pair is not None and body["pair_skipped_reason"] is None
    assert pair["margin"] == pytest.approx(pair["chosen"]["score"] - pair["rejected"]["score"])


def test_localization_only_service(loc_client: TestClient, scorer_data_root: Path) -> None:
    body = score_request(TEXTS, options={"lambda": 0}, image={"base64": image_base64(scorer_data_root)})
    response = loc_client.post("/score", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [c["score"] for c in result["candidates"]] == [
        c["localization"]["score"] for c in result["candidates"]
    ]
    assert all(c["semantic"] is None for c in result["candidates"])
    assert result["pair"]["chosen"] == {
        "id": "best",
        "refined": True,
        "text": grounded("ferret", "a cup", CUP) + " and " + grounded("ferret", "a dog", DOG),
        "score": 1.0,
    }


@pytest.mark.parametrize("fmt", ["shikra", "qwen3vl"])
def test_score_reads_each_family_in_its_own_frame(loc_client: TestClient, fmt: str) -> None:
    # shikra: of the image padded to a square; qwen3vl: 0-1000 of the image, with no resized_size.
    texts = [
        ("best", grounded(fmt, "a cup", LOOSE_CUP) + " and " + grounded(fmt, "a dog", DOG)),
        ("worst", grounded(fmt, "a dog", FAR_DOG)),
    ]
    response = loc_client.post("/score", json=score_request(texts, fmt=fmt, options={"lambda": 0}))
    assert response.status_code == 200, response.text
    best, worst = response.json()["candidates"]
    assert best["phrases"][0]["boxes"] == [pytest.approx([10.0, 10.0, 60.0, 50.0])]
    assert best["localization"]["score"] == pytest.approx(0.9)
    assert best["refined"]["text"] == grounded(fmt, "a cup", CUP) + " and " + grounded(fmt, "a dog", DOG)
    assert worst["localization"]["score"] == 0.0


def test_lambda_needs_a_semantic_model(loc_client: TestClient) -> None:
    response = loc_client.post("/score", json=score_request(TEXTS))  # default lambda 0.8
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "options.lambda"
    assert "semantic model is not configured" in error["message"]
    assert "SPR_SCORER_SEMANTIC_MODEL" in error["message"]


def _with(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = score_request(TEXTS)
    body.update(changes)
    return body


def _object_box(box: list[Any]) -> dict[str, Any]:
    body: dict[str, Any] = score_request(TEXTS)
    body["objects"][1]["box"] = box
    return body


BAD_REQUESTS: list[tuple[str, Callable[[Path], dict[str, Any]], str, str]] = [
    ("malformed box", lambda root: _object_box([1, 2, 3]), "objects.1.box", "4 items"),
    ("non-numeric box", lambda root: _object_box([1, 2, "x", 4]), "objects.1.box.2", "number"),
    ("inverted object box", lambda root: _object_box([50, 50, 10, 10]), "objects.1.box", "inverted"),
    ("inverted region", lambda root: _with(region=[100, 90, 20, 10]), "region", "inverted"),
    ("region off the image", lambda root: _with(region=[300, 0, 400, 50]), "region", "does not overlap"),
    ("unknown format", lambda root: _with(format="yolo"), "format", "'ferret'"),
    ("qwen25vl without resized size", lambda root: _with(format="qwen25vl"), "resized_size", "resized_size"),
    ("empty candidates", lambda root: _with(candidates=[]), "candidates", "at least 1"),
    (
        "too many candidates",
        lambda root: _with(candidates=[{"id": str(i), "text": "a cup"} for i in range(5)]),
        "candidates",
        "at most 4",
    ),
    (
        "duplicate candidate ids",
        lambda root: _with(candidates=[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]),
        "candidates",
        "used twice",
    ),
    ("candidate without text", lambda root: _with(candidates=[{"id": "a"}]), "candidates.0.text", "required"),
    ("unknown field", lambda root: _with(colour="red"), "colour", "unknown field"),
    (
        "lambda out of range",
        lambda root: _with(options={"lambda": 1.5}),
        "options.lambda",
        "less than or equal",
    ),
    ("no objects", lambda root: _with(objects=[]), "objects", "at least 1"),
    (
        "both image sources",
        lambda root: _with(image={"path": "img.png", "base64": "AAAA"}),
        "image",
        "exactly one",
    ),
    ("no image source", lambda root: _with(image={}), "image", "exactly one"),
    ("path traversal", lambda root: _with(image={"path": "../root-outside.png"}), "image.path", "'..'"),
    ("hidden traversal", lambda root: _with(image={"path": "sub/../../x.png"}), "image.path", "'..'"),
    ("absolute path", lambda root: _with(image={"path": "/etc/hostname"}), "image.path", "absolute"),
    (
        "symlink out of the root",
        lambda root: _with(image={"path": "escape.png"}),
        "image.path",
        "outside the data root",
    ),
    ("missing image", lambda root: _with(image={"path": "nope.png"}), "image.path", "no image"),
    ("not an image", lambda root: _with(image={"path": "not-an-image.png"}), "image.path", "not an image"),
    ("bad base64", lambda root: _with(image={"base64": "not base64!"}), "image.base64", "base64"),
    (
        "oversized image bytes",
        lambda root: _with(image={"base64": base64.b64encode(b"\x89PNG" + b"\0" * 60_000).decode()}),
        "image.base64",
        "over the limit of 50000 bytes",
    ),
    (
        "pixel limit",
        lambda root: _with(image={"base64": png_base64(400, 300)}),
        "image.base64",
        "400x300 = 120000 pixels, over the limit of 100000 pixels",
    ),
    (
        "decompression bomb",
        lambda root: _with(image={"base64": png_base64(2000, 1000)}),
        "image.base64",
        "over the limit of 100000 pixels",
    ),
]


# PIL warns (then the scorer refuses) between the pixel limit and twice it.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("case", "build", "field", "fragment"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_422_with_field_messages(
    client: TestClient,
    scorer_data_root: Path,
    case: str,
    build: Callable[[Path], dict[str, Any]],
    field: str,
    fragment: str,
) -> None:
    response = client.post("/score", json=build(scorer_data_root))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    fields = {f["field"]: f["message"] for f in error["fields"]}
    assert field in fields, fields
    assert fragment in fields[field], fields[field]


def test_invalid_json_gets_the_envelope(client: TestClient) -> None:
    response = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["fields"][0]["message"]


def test_body_over_the_limit_gets_413(client: TestClient) -> None:
    body = _with(candidates=[{"id": "a", "text": "x" * 300_000}])
    response = client.post("/score", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_route_gets_the_envelope(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_api_key_guards_every_route_but_health(make_settings: Settings) -> None:
    settings = make_settings(scorer_auth="api_key", scorer_api_key="s3cret-key-for-tests")
    body = score_request(TEXTS, options={"lambda": 0})
    with TestClient(create_app(settings)) as c:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "s3cret"}):
            response = c.post("/score", json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/metrics").status_code == 401
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        ok = c.post("/score", json=body, headers={"authorization": "Bearer s3cret-key-for-tests"})
        assert ok.status_code == 200
        assert c.post("/score", json=body, headers={"x-api-key": "s3cret-key-for-tests"}).status_code == 200


def test_openapi_documents_every_field(loc_client: TestClient) -> None:
    spec = loc_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"ScoreRequest", "ScoreResponse", "ErrorResponse", "ScoreOptions"} <= set(schemas)
    assert "HTTPValidationError" not in schemas  # 422s use the one envelope
    missing = []

    def walk(name: str, schema: dict[str, Any]) -> None:
        for prop, sub in schema.get("properties", {}).items():
            if not sub.get("description"):
                missing.append(f"{name}.{prop}")
            walk(f"{name}.{prop}", sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                walk(name, schema[key])
        for key in ("anyOf", "allOf", "oneOf"):
            for sub in schema.get(key, []):
                walk(name, sub)

    for name, schema in schemas.items():
        walk(name, schema)
    assert missing == []
    options = schemas["ScoreOptions"]["properties"]
    assert "lambda" in options and "lambda_" not in options
    assert "pixels" in schemas["ScoreRequest"]["properties"]["region"]["description"]
    assert spec["paths"]["/score"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }


def test_health_ready_and_metrics(make_settings: Settings, redis_url: str) -> None:
    with TestClient(create_app(make_settings(redis_url=redis_url))) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"] is True
        assert c.post("/score", json=score_request(TEXTS, options={"lambda": 0})).status_code == 200
        assert c.post("/score", json=_with(format="yolo")).status_code == 422
        text = c.get("/metrics").text
    assert 'spr_scorer_http_requests_total{route="/score",status="200"} 1.0' in text
    assert 'spr_scorer_http_requests_total{route="/score",status="422"} 1.0' in text
    assert 'spr_scorer_candidates_scored_total{source="http"} 3.0' in text
    assert 'spr_scorer_pairs_made_total{source="http"} 1.0' in text
    assert 'spr_scorer_score_count{kind="localization"} 3.0' in text
    assert 'spr_scorer_queue_backlog{stream="spr:candidates"} 0.0' in text


def test_readyz_is_503_when_redis_is_unreachable(make_settings: Settings) -> None:
    from spr.shared.processes import free_port

    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as c:
        response = c.get("/readyz")
        assert response.status_code == 503
        assert "Redis" in response.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200


def test_through_a_real_uvicorn_server(make_settings: Settings, clip: SemanticScorer) -> None:
    app = create_app(make_settings(), scorer=Scorer(semantic=clip))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        response = http.post("/score", json=score_request(TEXTS))
        assert response.status_code == 200, response.text
        assert response.json()["pair"]["rejected"]["id"] == "worst"
        bad = http.post("/score", json=_with(candidates=[]))
        assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "candidates"
