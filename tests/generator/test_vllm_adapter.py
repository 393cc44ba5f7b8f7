"""SPR_GENERATOR_ADAPTER with the vllm engine: the adapter is loaded into the running server over HTTP
and every request names it. The server here speaks vLLM's LoRA routes (``/v1/models`` with ``parent``,
``/v1/load_lora_adapter`` with its "already loaded" and "runtime updating disabled" answers) on a real
socket; tests/generator/test_vllm_engine.py runs the real vLLM (opt-in, ``-m vllm``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from spr.generator.engines.protocol import ChatMessage, EngineError, GenerationRequest, TextPart
from spr.generator.engines.vllm_engine import VllmServerEngine, adapter_name
from spr.generator.factory import build_engine
from spr.generator.settings import GeneratorSettings

BASE = "policy"


@dataclass
class LoraServer:
    url: str
    runtime_updates: bool = True
    loaded: dict[str, str] = field(default_factory=dict)
    chat_models: list[str] = field(default_factory=list)


def _handler(state: LoraServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            del args

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            models = [{"id": BASE, "parent": None}]
            models += [{"id": name, "parent": BASE} for name in state.loaded]
            self._send(200, {"object": "list", "data": models})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path == "/v1/load_lora_adapter":
                if not state.runtime_updates:
                    self._send(404, {"detail": "Not Found"})
                elif body["lora_name"] in state.loaded:
                    message = f"The lora adapter '{body['lora_name']}' has already been loaded."
                    self._send(400, {"message": message})
                elif not Path(body["lora_path"]).is_dir():
                    self._send(400, {"message": f"No adapter found for {body['lora_path']}"})
                else:
                    state.loaded[body["lora_name"]] = body["lora_path"]
                    self._send(200, {})
                return
            state.chat_models.append(body["model"])
            choices = [
                {"index": i, "message": {"content": f"sample {i}"}, "token_ids": [1], "finish_reason": "stop"}
                for i in range(body["n"])
            ]
            self._send(200, {"choices": choices})

    return Handler


@pytest.fixture()
def server() -> Iterator[LoraServer]:
    state = LoraServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _adapter(tmp_path: Path, weights: bytes = b"w") -> Path:
    adapter = tmp_path / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    return adapter


def _request() -> GenerationRequest:
    message = ChatMessage(role="user", content=(TextPart("describe"),))
    return GenerationRequest(messages=(message,), n=2, seed=0, temperature=1.0, top_p=1.0, max_new_tokens=8)


def test_the_adapter_is_loaded_and_every_request_names_it(server: LoraServer, tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    settings = GeneratorSettings(
        generator_engine="vllm", generator_vllm_url=server.url, generator_adapter=adapter
    )
    engine = build_engine(settings)
    name = adapter_name(adapter)
    assert server.loaded == {name: str(adapter)}
    assert [s.text for s in engine.generate([_request()])[0]] == ["sample 0", "sample 1"]
    assert server.chat_models == [name]
    assert engine.model_id == f"{BASE}+{adapter}"  # the base is still found among the listed LoRAs


def test_a_second_generator_finds_the_adapter_already_loaded(server: LoraServer, tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    first = VllmServerEngine(server.url, BASE, adapter=adapter)
    second = VllmServerEngine(server.url, adapter=adapter)
    assert first.served_model_name == second.served_model_name == adapter_name(adapter)


def test_a_retrained_adapter_at_the_same_path_gets_a_new_name(tmp_path: Path) -> None:
    before = adapter_name(_adapter(tmp_path, b"round one"))
    after = adapter_name(_adapter(tmp_path, b"round two, longer"))
    assert before != after


def test_a_server_without_runtime_lora_says_how_to_start_it(server: LoraServer, tmp_path: Path) -> None:
    server.runtime_updates = False
    with pytest.raises(EngineError, match=r"--enable-lora.*VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"):
        VllmServerEngine(server.url, BASE, adapter=_adapter(tmp_path))


def test_an_adapter_the_server_cannot_see_is_named(server: LoraServer, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"SPR_GENERATOR_ADAPTER=/nowhere/adapter.*as the server sees"):
        VllmServerEngine(server.url, BASE, adapter=Path("/nowhere/adapter"))


def test_an_empty_adapter_setting_means_the_base_model(
    server: LoraServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker-compose.yml passes `SPR_GENERATOR_ADAPTER: ${SPR_GENERATOR_ADAPTER:-}`: empty in round one.
    monkeypatch.setenv("SPR_GENERATOR_ADAPTER", "")
    monkeypatch.setenv("SPR_GENERATOR_ENGINE", "vllm")
    monkeypatch.setenv("SPR_GENERATOR_VLLM_URL", server.url)
    engine = build_engine(GeneratorSettings())
    assert engine.model_id == BASE and not server.loaded


def test_following_the_policy_loads_each_announced_round_into_the_server(
    server: LoraServer, tmp_path: Path, redis_url: str
) -> None:
    from spr.generator.generation import CandidateGenerator, SamplingConfig
    from spr.generator.policy_follow import PolicyFollower
    from spr.generator.prompts import PromptSet
    from spr.shared.policy import PolicyBoard, publish_adapter

    engine = VllmServerEngine(server.url, BASE)
    sampling = SamplingConfig(samples_per_prompt=1, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    generator = CandidateGenerator(engine, PromptSet.load(), "qwen2vl", sampling, data_root=tmp_path)
    board = PolicyBoard.from_url(redis_url)
    follower = PolicyFollower(board, generator)
    for round_, weights in ((1, b"round one"), (2, b"round two")):
        (tmp_path / f"trained-{round_}").mkdir()
        trained = _adapter(tmp_path / f"trained-{round_}", weights)
        version = publish_adapter(trained, tmp_path / "policies", round_=round_, model_id=BASE)
        board.announce(version)
        assert follower.refresh()
        published = Path(version.adapter_dir or "")
        assert engine.served_model_name == adapter_name(published)  # requests now name this round
        assert server.loaded[adapter_name(published)] == str(published)
        assert generator.policy == version
    assert len(server.loaded) == 2 and not follower.refresh()
    board.close()
