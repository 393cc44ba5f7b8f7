"""The server as `spr scorer serve` configures it: slow clients are cut off, connections are capped,
and /healthz keeps answering while the scorer is saturated (CPU work never runs on the event loop)."""

from __future__ import annotations

import re
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from scorer_fixtures import CUP, DOG, IMAGE, grounded, score_request
from spr.scorer.app import create_app
from spr.scorer.process_server import ScorerProcess
from spr.scorer.settings import ScorerSettings
from spr.scorer.thread_server import ServerThread

Settings = Callable[..., ScorerSettings]


@pytest.fixture()
def server(make_settings: Settings) -> Iterator[ServerThread]:
    settings = make_settings(
        scorer_header_timeout_s=0.5,
        scorer_body_timeout_s=0.5,
        scorer_keep_alive_timeout_s=0.5,
    )
    with ServerThread(create_app(settings), settings) as running:
        yield running


def _connect(server: ServerThread) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout_s``)."""
    sock.settimeout(timeout_s)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_slow_headers_get_408_and_the_connection_is_closed(server: ServerThread) -> None:
    silent = _connect(server)
    dripping = _connect(server)
    dripping.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")  # never finishes its headers
    for sock in (silent, dripping):
        with sock:
            answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"code":"request_timeout"' in answer
        assert b"SPR_SCORER_HEADER_TIMEOUT_S" in answer
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").status_code == 200
        metrics = http.get("/metrics").text
    assert 'spr_scorer_refused_total{reason="header_timeout",source="http"} 2.0' in metrics


def test_a_kept_alive_connection_gets_the_header_timeout_again(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\n")  # 2nd never ends
        answer = _read_until_closed(sock)
    first, _, rest = answer.partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"HTTP/1.1 408 "), answer
    assert b"SPR_SCORER_HEADER_TIMEOUT_S" in rest


def test_pipelined_requests_are_answered_in_order(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        answer = _read_until_closed(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"404", b"200"], answer


def test_headers_over_the_limit_get_431_and_the_connection_is_closed(make_settings: Settings) -> None:
    settings = make_settings(scorer_max_header_bytes=4096)
    with ServerThread(create_app(settings), settings) as server:
        with _connect(server) as sock:  # just under the limit: served
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 3900 + b"\r\n")
            sock.sendall(b"connection: close\r\n\r\n")
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
        # One write, and one header in 5 writes (the server may read them as one or several chunks).
        for pieces in ([b"a" * 5000], [b"a" * 1000] * 5):
            with _connect(server) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ")
                try:
                    for piece in pieces:
                        sock.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused before the last piece: the answer is still readable
                answer = _read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert b'"code":"headers_too_large"' in answer and b"SPR_SCORER_MAX_HEADER_BYTES" in answer
        metrics = httpx.get(server.url + "/metrics").text
    assert 'spr_scorer_refused_total{reason="header_too_large",source="http"} 2.0' in metrics


def test_a_slow_body_gets_408(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n")
        sock.sendall(b'content-length: 1000\r\n\r\n{"image": ')  # 10 of 1000 bytes, then nothing
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":"request_timeout"' in answer and b"SPR_SCORER_BODY_TIMEOUT_S" in answer


def test_idle_keep_alive_connections_are_closed(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = _read_until_closed(sock)  # the answer, then the close after the keep-alive timeout
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}')


def test_over_the_connection_cap_only_health_is_served(make_settings: Settings) -> None:
    settings = make_settings(scorer_max_connections=4)
    with ServerThread(create_app(settings), settings) as server:
        held = [_connect(server) for _ in range(4)]
        try:
            # Accepted in order: each of these finds 4 open connections before it.
            with _connect(server) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                health = _read_until_closed(probe)  # answered, then closed
            assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b'{"status":"ok"}')
            with _connect(server) as client:
                client.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
                busy = _read_until_closed(client)
            assert busy.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in busy
            assert b'"code":"busy"' in busy and b"SPR_SCORER_MAX_CONNECTIONS" in busy
            with _connect(server) as idle:
                assert _read_until_closed(idle).startswith(b"HTTP/1.1 408 ")  # 1 s over the cap, not 10
        finally:
            for sock in held:
                sock.close()
        _wait_for_health(server)
        metrics = httpx.get(server.url + "/metrics").text
    assert 'spr_scorer_refused_total{reason="too_many_connections",source="http"} 1.0' in metrics


def test_past_twice_the_cap_connections_are_refused_at_once(make_settings: Settings) -> None:
    settings = make_settings(scorer_max_connections=4)
    with ServerThread(create_app(settings), settings) as server:
        held = [_connect(server) for _ in range(8)]
        try:
            with _connect(server) as extra:
                answer = _read_until_closed(extra, timeout_s=0.9)  # before the over-cap header timeout
            assert answer.startswith(b"HTTP/1.1 503 ") and b"SPR_SCORER_MAX_CONNECTIONS" in answer
        finally:
            for sock in held:
                sock.close()
        _wait_for_health(server)


def _wait_for_health(server: ServerThread) -> None:
    deadline = time.monotonic() + 10
    while True:  # the server notices the closed connections on its next loop turns
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "/healthz did not come back after the connections closed"
        time.sleep(0.05)  # polling, with a deadline


# -- under load, in a real `spr scorer serve` process -------------------------------------------------


def _heavy_body() -> dict[str, Any]:
    """Near the default limits: 400 objects x 480 boxes = 192,000 box pairs (limit 200,000)."""
    objects = [
        {"label": f"o{i}", "box": [1.0 + i % 150, 1.0 + i % 80, 40.0 + i % 150, 20.0 + i % 80]}
        for i in range(400)
    ]
    text = " and ".join(grounded("ferret", "a cup", CUP if i % 2 else DOG) for i in range(60))
    candidates = [(f"c{i}", text) for i in range(8)]
    return score_request(candidates, objects=objects, options={"lambda": 0})


@pytest.mark.faults
def test_healthz_answers_while_the_scorer_is_saturated(scorer_data_root: Path, tmp_path: Path) -> None:
    env = {
        "SPR_SCORER_SEMANTIC_MODEL": "none",
        "SPR_DATA_ROOT": str(scorer_data_root),
        "SPR_SCORER_HEADER_TIMEOUT_S": "2",
        # The slow flood below goes past the cap: health must still answer over it.
        "SPR_SCORER_MAX_CONNECTIONS": "150",
    }
    body = _heavy_body()
    assert body["image"] == {"path": IMAGE}
    stop = threading.Event()
    statuses: list[int] = []
    lock = threading.Lock()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                status = http.post("/score", json=body).status_code
                with lock:
                    statuses.append(status)

    with ScorerProcess(env, tmp_path / "scorer.log") as server:
        clients = [threading.Thread(target=load, args=(server.url,)) for _ in range(6)]
        for client in clients:
            client.start()
        slow: list[socket.socket] = []
        latencies = []
        try:
            deadline = time.monotonic() + 60
            while len(statuses) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling until the scorer is busy (clients connected), with a deadline
            # Slow clients too: 200 connections (50 over the cap) that never finish their headers.
            for _ in range(200):
                slow.append(socket.create_connection(("127.0.0.1", server.port)))
                slow[-1].sendall(b"POST /score HTTP/1.1\r\nhost: x\r\n")
            with httpx.Client(base_url=server.url, timeout=30) as probe:
                for _ in range(40):
                    started = time.perf_counter()
                    assert probe.get("/healthz").status_code == 200
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.05)  # probe spacing, not a wait for a condition
            # Every slow client is cut off with a 408 (2 s, 1 s over the cap).
            for sock in slow:
                assert _read_until_closed(sock, timeout_s=30).startswith(b"HTTP/1.1 408 ")
        finally:
            stop.set()
            for client in clients:
                client.join(120)
            for sock in slow:
                sock.close()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    median = statistics.median(latencies)
    print(f"/healthz under load: median {median * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert median < 0.1, latencies
    assert max(latencies) < 2.0, latencies
