"""POST /get_reward (OpenRLHF's remote reward protocol) through the real app and a real server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from scorer_fixtures import CUP, DOG, FAR_DOG, IMAGE, LOOSE_CUP, OBJECTS, REGION, grounded
from spr.scorer.app import create_app
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings
from spr.scorer.thread_server import ServerThread
from spr.shared.reward_api import RewardOptions, RewardTask
from spr.shared.scoring_api import ImageInput

Settings = Callable[..., ScorerSettings]

PROMPT = (
    "<|im_start|>user\nDescribe the region [0, 0, 800, 999] with boxes.<|im_end|>\n<|im_start|>assistant\n"
)
GOOD = grounded("ferret", "a cup", CUP) + " and " + grounded("ferret", "a dog", DOG)
LOOSE = grounded("ferret", "a cup", LOOSE_CUP)
FAR = grounded("ferret", "a dog", FAR_DOG)
BROKEN = "a cup [50, 100, 250"


def label(**options: float) -> str:
    task = RewardTask(image=ImageInput(path=IMAGE), region=REGION, objects=OBJECTS, format="ferret")
    data = json.loads(task.to_json())
    if options:
        data["options"] = options
    return json.dumps(data)


def openrlhf_body(responses: list[str], labels: list[str]) -> dict[str, object]:
    """What OpenRLHF's remote_rm_fn posts: decoded prompt + response, the prompts, the labels."""
    return {"query": [PROMPT + r for r in responses], "prompts": [PROMPT] * len(responses), "labels": labels}


@pytest.fixture()
def loc_client(make_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(scorer_max_candidates=2))) as test_client:
        yield test_client


def test_get_reward_scores_each_rollout_as_written(loc_client: TestClient) -> None:
    responses = [GOOD, LOOSE, FAR, BROKEN, "no boxes at all"]
    body = openrlhf_body(responses, [label(**{"lambda": 0.0, "format_penalty": 0.3})] * len(responses))
    answer = loc_client.post("/get_reward", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    # S_loc (paper): mean over the 2 GT objects of the best IoU >= 0.5, as written (no refinement).
    assert data["rewards"] == pytest.approx([1.0, 0.4, 0.0, -0.3, -0.3])
    assert data["scores"] == data["rewards"]
    assert data["extra_logs"]["s_loc"] == pytest.approx([1.0, 0.4, 0.0, 0.0, 0.0])
    assert data["extra_logs"]["format_penalized"] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert data["extra_logs"]["parse_problems"][3] >= 1


def test_get_reward_uses_semantic_model_and_mixes_tasks(
    make_settings: Settings, clip: SemanticScorer
) -> None:
    other = json.loads(label())
    other["region"] = [0.0, 0.0, 100.0, 100.0]
    labels = [label(), json.dumps(other), label()]
    app = create_app(make_settings(), scorer=Scorer(semantic=clip))
    with TestClient(app) as client:
        answer = client.post("/get_reward", json=openrlhf_body([GOOD, GOOD, FAR], labels))
    assert answer.status_code == 200, answer.text
    data = answer.json()
    s_sem = data["extra_logs"]["s_sem"]
    assert data["rewards"][0] == pytest.approx(0.8 * s_sem[0] + 0.2 * 1.0)
    assert data["rewards"][2] == pytest.approx(0.8 * s_sem[2] + 0.2 * 0.0)
    assert s_sem[0] != s_sem[1]  # another region: another region embedding


def test_get_reward_matches_the_shaping_of_score(loc_client: TestClient) -> None:
    opts = RewardOptions.model_validate({"lambda": 0.0})
    task = RewardTask.parse(label(), field="label")
    scored = loc_client.post("/score", json=task.score_request([LOOSE], opts).model_dump(by_alias=True))
    reward = loc_client.post("/get_reward", json=openrlhf_body([LOOSE], [label(**{"lambda": 0.0})]))
    assert reward.json()["rewards"][0] == pytest.approx(scored.json()["candidates"][0]["score"])


def test_get_reward_without_prompts_scores_the_whole_query(loc_client: TestClient) -> None:
    body = {"query": [GOOD], "labels": [label(**{"lambda": 0.0})]}
    assert loc_client.post("/get_reward", json=body).json()["rewards"] == pytest.approx([1.0])


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        (["not json"], "labels.0"),
        (
            ['{"image": {"path": "img.png"}, "region": [0, 0, 10, 10], "objects": [], "format": "ferret"}'],
            "labels.0.objects",
        ),
        (
            [json.dumps({**json.loads(label(**{"lambda": 0.0})), "region": [500.0, 500.0, 600.0, 600.0]})],
            "labels.0.region",
        ),
        ([label()], "labels.0.options.lambda"),  # lambda 0.8 needs a semantic model this scorer lacks
        ([label(**{"lambda": 2.0})], "labels.0.options.lambda"),
    ],
)
def test_get_reward_names_the_bad_label(loc_client: TestClient, labels: list[str], field: str) -> None:
    answer = loc_client.post("/get_reward", json=openrlhf_body([GOOD], labels))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["fields"][0]["field"] == field, error


def test_get_reward_refuses_misaligned_lists(loc_client: TestClient) -> None:
    body = openrlhf_body([GOOD, FAR], [label(**{"lambda": 0.0})])
    answer = loc_client.post("/get_reward", json=body)
    assert answer.status_code == 422
    assert "labels has 1 entries but query has 2" in answer.json()["error"]["message"]


def test_get_reward_over_real_http_as_openrlhf_posts_it(make_settings: Settings) -> None:
    app = create_app(make_settings())
    body = openrlhf_body([GOOD, FAR] * 4, [label(**{"lambda": 0.0})] * 8)
    with ServerThread(app) as server:
        # OpenRLHF: requests.post(url, json=data, headers={"Content-Type": "application/json"}).
        answer = httpx.post(f"{server.url}/get_reward", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rewards"] == pytest.approx([1.0, 0.0] * 4)
