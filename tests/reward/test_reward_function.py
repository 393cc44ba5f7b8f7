"""spr.reward: the TRL reward function over the in-process scorer and over a real scorer server."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spr.reward import SprReward, completion_text
from spr.reward.backends import HttpBackend, InProcessBackend, RewardBackendError
from spr.shared.processes import free_port
from spr.shared.reward_api import RewardOptions, RewardTask, RewardTaskError
from spr.shared.schemas import AnnotatedObject
from spr.shared.scoring_api import ImageInput

# img.png is 200 x 100; ferret's 0-1000 grid maps v to x = v / 5, y = v / 10.
CUP_BOX = (10.0, 10.0, 50.0, 50.0)
DOG_BOX = (60.0, 20.0, 140.0, 90.0)
GOOD = "a cup [50, 100, 250, 500] and a dog [300, 200, 700, 900]"
HALF = "a cup [50, 100, 300, 500]"  # IoU 0.8 with the cup, no dog: S_loc 0.4
WRONG = "a dog [300, 200, 500, 600]"  # IoU < 0.5: S_loc 0
BROKEN = "a cup [50, 100, 250"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("reward-data")
    image = Image.new("RGB", (200, 100), (30, 60, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle(CUP_BOX, fill=(230, 30, 30))
    draw.ellipse(DOG_BOX, fill=(40, 210, 60))
    image.save(root / "img.png")
    return root


def task_json(region: tuple[float, float, float, float] = (0.0, 0.0, 160.0, 100.0)) -> str:
    objects = [AnnotatedObject(label="cup", box=CUP_BOX), AnnotatedObject(label="dog", box=DOG_BOX)]
    task = RewardTask(image=ImageInput(path="img.png"), region=region, objects=objects, format="ferret")
    return task.to_json()


LOC_ONLY = RewardOptions.model_validate({"lambda": 0.0, "format_penalty": 0.25})


def conversation(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_in_process_rewards_and_logged_metrics(data_root: Path) -> None:
    reward = SprReward(InProcessBackend.load(data_root=data_root), LOC_ONLY)
    logged: dict[str, list[float]] = {}
    texts = [GOOD, HALF, WRONG, BROKEN]
    rewards = reward(
        prompts=["p"] * 4,
        completions=[conversation(t) for t in texts],
        spr_task=[task_json()] * 4,
        log_metric=lambda name, value: logged.setdefault(name, []).append(value),
    )
    assert rewards == pytest.approx([1.0, 0.4, 0.0, -0.25])
    assert logged["spr/s_loc"] == [pytest.approx(1.4 / 4)]
    assert logged["spr/format_penalized"] == [0.25]
    assert logged["spr/parse_problems"][0] >= 0.25
    assert "spr/s_sem" not in logged  # lambda 0: no semantic score
    assert reward.stats.means()["spr/reward"] == pytest.approx((1.4 - 0.25) / 4)
    assert reward.__name__ == "spr"


def test_in_process_semantic_batches_several_regions(data_root: Path, tiny_models: Any) -> None:
    backend = InProcessBackend.load(data_root=data_root, semantic_model=tiny_models.clip)
    reward = SprReward(backend)  # lambda 0.8, as the method
    tasks = [task_json(), task_json((0.0, 0.0, 100.0, 100.0)), task_json()]
    values = reward.values([GOOD, GOOD, WRONG], tasks)
    assert values[0].semantic is not None and values[1].semantic is not None
    assert values[0].semantic != values[1].semantic
    assert values[0].reward == pytest.approx(0.8 * values[0].semantic + 0.2 * 1.0)
    # Batched per call: the same as scoring each task alone.
    alone = reward.values([GOOD], [tasks[1]])[0]
    assert alone.semantic == pytest.approx(values[1].semantic, abs=1e-5)


def test_http_backend_matches_in_process_and_batches_by_task(data_root: Path, tiny_models: Any) -> None:
    from spr.scorer.app import create_app
    from spr.scorer.settings import ScorerSettings
    from spr.scorer.thread_server import ServerThread

    settings = ScorerSettings(
        data_root=data_root, scorer_semantic_model=str(tiny_models.clip), scorer_auth="none"
    )
    texts = [GOOD, HALF, WRONG, BROKEN, GOOD, HALF]
    tasks = [task_json()] * 3 + [task_json((0.0, 0.0, 100.0, 100.0))] * 3
    local = SprReward(InProcessBackend.load(data_root=data_root, semantic_model=tiny_models.clip))
    expected = local.values(texts, tasks)
    with ServerThread(create_app(settings)) as server:
        backend = HttpBackend(server.url, max_candidates=2)
        remote = SprReward(backend)
        try:
            got = remote.values(texts, tasks)
        finally:
            remote.close()
    # 2 tasks of 3 completions, at most 2 per request: 4 requests for the step.
    assert backend.requests_sent == 4
    assert [v.reward for v in got] == pytest.approx([v.reward for v in expected], abs=1e-5)
    assert [v.penalized for v in got] == [False, False, False, True, False, False]


@pytest.fixture()
def flaky_server() -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server answering 503 twice, then a 422 error envelope; records each status sent."""
    sent: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status = 503 if len(sent) < 2 else 422
            sent.append(status)
            body = json.dumps({"error": {"code": "x", "message": f"answer {len(sent)}", "fields": []}})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sent
    server.shutdown()
    server.server_close()


def test_http_backend_retries_overload_then_reports_the_refusal(flaky_server: tuple[str, list[int]]) -> None:
    url, sent = flaky_server
    reward = SprReward(HttpBackend(url, retries=3, backoff_s=0.01), LOC_ONLY)
    with pytest.raises(RewardBackendError, match=r"HTTP 422: answer 3"):
        reward.values([GOOD], [task_json()])
    assert sent == [503, 503, 422]  # retried the 503s, not the 422
    reward.close()


def test_http_backend_gives_up_on_an_unreachable_scorer() -> None:
    backend = HttpBackend(
        f"http://127.0.0.1:{free_port('127.0.0.1')}", retries=2, backoff_s=0.01, timeout_s=2
    )
    with pytest.raises(RewardBackendError, match="after 3 attempts"):
        SprReward(backend, LOC_ONLY).values([GOOD], [task_json()])
    assert backend.requests_sent == 3
    backend.close()


def test_missing_or_bad_task_column_names_the_field(data_root: Path) -> None:
    reward = SprReward(InProcessBackend.load(data_root=data_root), LOC_ONLY)
    with pytest.raises(RewardTaskError, match="no 'spr_task' column"):
        reward(prompts=["p"], completions=[GOOD])
    bad = json.loads(task_json())
    bad["region"] = [10, 10, 5, 5]
    with pytest.raises(RewardTaskError) as info:
        reward(prompts=["p"], completions=[GOOD], spr_task=[json.dumps(bad)])
    assert info.value.field == "spr_task.0.region"
    with pytest.raises(RewardBackendError, match=r"requests.0.image.path"):
        missing = json.loads(task_json())
        missing["image"] = {"path": "nope.png"}
        reward(prompts=["p"], completions=[GOOD], spr_task=[json.dumps(missing)])


def test_completion_text_reads_strings_and_conversations() -> None:
    assert completion_text("a") == "a"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "b"}]}]) == "b"
    with pytest.raises(RewardTaskError):
        completion_text(3)


def test_importable_without_torch_fastapi_or_httpx() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'fastapi', 'httpx', 'transformers'): sys.modules[name] = None\n"
        "import spr.reward, spr.reward.backends, spr.shared.reward_api\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_http_backend_sends_the_api_key(data_root: Path) -> None:
    from spr.scorer.app import create_app
    from spr.scorer.settings import ScorerSettings
    from spr.scorer.thread_server import ServerThread

    settings = ScorerSettings(
        data_root=data_root, scorer_semantic_model="none", scorer_auth="api_key", scorer_api_key="s3cret"
    )
    with ServerThread(create_app(settings)) as server:
        keyed = SprReward(HttpBackend(server.url, api_key="s3cret"), LOC_ONLY)
        assert keyed.values([GOOD], [task_json()])[0].reward == pytest.approx(1.0)
        keyed.close()
        keyless = HttpBackend(server.url, retries=2, backoff_s=0.01)
        with pytest.raises(RewardBackendError, match="HTTP 401"):
            SprReward(keyless, LOC_ONLY).values([GOOD], [task_json()])
        assert keyless.requests_sent == 1  # a refusal is not retried
        keyless.close()
