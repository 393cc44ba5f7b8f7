"""vLLM engines: the OpenAI-compatible server (production) and the in-process ``vllm.LLM`` (offline).

Server: one ``POST /v1/chat/completions`` per request, images as base64 PNG data URLs, ``n`` samples
and ``seed`` in the body; requests run concurrently (``asyncio.gather`` under a semaphore) so the
server's continuous batching stays full. vLLM gives sample ``i`` of a request the seed ``seed + i``,
which is the contract of :mod:`spr.generator.engines.protocol`.

Both engines ask vLLM to keep special tokens in the text (``skip_special_tokens=False``): grounding
syntaxes such as Qwen2-VL's ``<|box_start|>`` are special tokens, and dropping them would erase the
boxes. The end-of-sequence token itself is never part of vLLM's text.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spr.generator.engines.protocol import EngineError, GenerationRequest, ImagePart, Sample

if TYPE_CHECKING:
    import httpx
    from PIL.Image import Image

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
LOAD_LORA_PATH = "/v1/load_lora_adapter"
# Answers worth a resend: the server restarting or overloaded, or a transient engine error.
RETRY_STATUS = frozenset({500, 502, 503, 504})


def image_data_url(image: Image) -> str:
    """``image`` as a ``data:image/png;base64,...`` URL (lossless PNG: both engines see the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(request: GenerationRequest, urls: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The request's conversation in OpenAI chat format (content parts; images as data URLs).

    ``urls`` caches data URLs by ``id(image)``: a task's prompts share the full image.
    """
    cache = {} if urls is None else urls
    messages = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                key = id(part.image)
                if key not in cache:
                    cache[key] = image_data_url(part.image)
                parts.append({"type": "image_url", "image_url": {"url": cache[key]}})
            else:
                parts.append({"type": "text", "text": part.text})
        messages.append({"role": message.role, "content": parts})
    return messages


def sampling_fields(request: GenerationRequest) -> dict[str, Any]:
    """vLLM sampling parameters for ``request`` (same names in the HTTP body and in SamplingParams).

    Greedy requests (temperature 0) ask for one sample: vLLM refuses n > 1 without sampling, and every
    greedy sample is the same text anyway (:func:`expand_greedy` copies it).
    """
    return {
        "n": 1 if request.temperature == 0 else request.n,
        "seed": request.seed,
        "temperature": request.temperature,
        "top_p": request.top_p if request.temperature > 0 else 1.0,
        "top_k": request.top_k if request.temperature > 0 else 0,
        "repetition_penalty": request.repetition_penalty,
        "max_tokens": request.max_new_tokens,
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
    }


class VllmServerEngine:
    """Client of a running vLLM OpenAI-compatible server at ``base_url`` (e.g. http://vllm:8000).

    ``served_model_name`` None: use the only model the server lists. ``concurrency``: requests in flight.
    Connection failures and 5xx answers are resent up to ``retries`` times (exponential back-off from
    ``retry_backoff_s`` seconds); a 4xx answer or a timeout fails at once.

    ``adapter``: a LoRA adapter folder, as the server sees it (the same path on one machine; the shared
    mount in docker-compose.yml). It is loaded into the running server (``POST /v1/load_lora_adapter``:
    vLLM started with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) and every request
    names it, so the next round samples the trained policy without a merge or a restart.
    """

    def __init__(
        self,
        base_url: str,
        served_model_name: str | None = None,
        *,
        concurrency: int = 32,
        timeout_s: float = 600.0,
        model_id: str | None = None,
        retries: int = 2,
        retry_backoff_s: float = 0.5,
        adapter: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        base = served_model_name or self._only_served_model()
        self.served_model_name = base if adapter is None else self._load_adapter(adapter)
        self._model_id = model_id or (base if adapter is None else f"{base}+{adapter}")

    @property
    def model_id(self) -> str:
        return self._model_id

    def close(self) -> None:
        """Clients are per call; nothing stays open."""

    def load_adapter(self, adapter: Path) -> None:
        """Load ``adapter`` into the server (``/v1/load_lora_adapter``) and sample with it from now on."""
        self.served_model_name = self._load_adapter(adapter)

    def _only_served_model(self) -> str:
        import httpx

        try:
            response = httpx.get(self.base_url + MODELS_PATH, timeout=min(self.timeout_s, 30.0))
            response.raise_for_status()
            # Loaded LoRA adapters are listed too, each with its base model as "parent".
            names = [str(entry["id"]) for entry in response.json()["data"] if not entry.get("parent")]
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                f"cannot list the models of the vLLM server at SPR_GENERATOR_VLLM_URL={self.base_url}: {exc}"
            ) from None
        if len(names) != 1:
            raise EngineError(
                f"the vLLM server at {self.base_url} serves {names}: set SPR_GENERATOR_SERVED_MODEL_NAME"
            )
        return names[0]

    def _load_adapter(self, adapter: Path) -> str:
        """Load ``adapter`` into the server under a name of its own; the name requests then use."""
        import httpx

        name = adapter_name(adapter)
        body = {"lora_name": name, "lora_path": str(adapter)}
        fix = (
            "start vLLM with --enable-lora, --max-lora-rank at least the adapter's rank and the environment "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and give SPR_GENERATOR_ADAPTER as the server sees the "
            "folder"
        )
        try:
            response = httpx.post(
                self.base_url + LOAD_LORA_PATH, json=body, timeout=min(self.timeout_s, 300.0)
            )
        except httpx.HTTPError as exc:
            raise EngineError(
                f"cannot load SPR_GENERATOR_ADAPTER={adapter} into the vLLM server at {self.base_url}: {exc}"
            ) from None
        # Another generator process may have loaded the same version first: that is success too.
        if response.status_code != 200 and "already" not in response.text:
            raise EngineError(
                f"the vLLM server at {self.base_url} refused SPR_GENERATOR_ADAPTER={adapter} "
                f"(HTTP {response.status_code}: {response.text[:300]}): {fix}"
            )
        logger.info("LoRA adapter %s loaded into %s as %s", adapter, self.base_url, name)
        return name

    def generate(self, requests: list[GenerationRequest]) -> list[list[Sample]]:
        """Send every request concurrently (at most ``concurrency`` in flight); blocks until all answer.

        Runs its own event loop: call it from a plain thread, never from inside a running loop.
        """
        if not requests:
            return []
        return asyncio.run(self._generate_all(requests))

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[list[Sample]]:
        import httpx

        limit = asyncio.Semaphore(self.concurrency)
        urls: dict[int, str] = {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s, limits=limits) as client:
            bodies = [self._body(request, urls) for request in requests]
            return list(
                await asyncio.gather(
                    *(
                        self._post(client, limit, request, body)
                        for request, body in zip(requests, bodies, strict=True)
                    )
                )
            )

    def _body(self, request: GenerationRequest, urls: dict[int, str]) -> dict[str, Any]:
        return {
            "model": self.served_model_name,
            "messages": openai_messages(request, urls),
            "return_token_ids": True,
            **sampling_fields(request),
        }

    async def _post(
        self,
        client: httpx.AsyncClient,
        limit: asyncio.Semaphore,
        request: GenerationRequest,
        body: dict[str, Any],
    ) -> list[Sample]:
        import httpx

        what = f"vLLM server {self.base_url}, {request.tag or 'a request'}"
        for attempt in range(self.retries + 1):
            async with limit:
                try:
                    response = await client.post(CHAT_PATH, json=body)
                except httpx.TimeoutException as exc:
                    raise EngineError(f"{what}: no answer within {self.timeout_s} s ({exc})") from None
                except httpx.TransportError as exc:
                    error, response = f"{type(exc).__name__}: {exc}", None
            if response is not None:
                if response.status_code == 200:
                    return parse_chat_response(response.json(), request)
                error = f"HTTP {response.status_code}: {response.text[:500]}"
                if response.status_code not in RETRY_STATUS:
                    raise EngineError(f"{what}: {error}")
            if attempt == self.retries:
                raise EngineError(f"{what}: {error} (after {attempt + 1} attempts)")
            # transient: a restarting server, or vLLM's multimodal cache race (fixed by a resend)
            logger.warning("%s: %s; retrying", what, error)
            await asyncio.sleep(self.retry_backoff_s * 2**attempt)
        raise EngineError(f"{what}: no attempt made (retries={self.retries})")


def adapter_name(adapter: Path) -> str:
    """vLLM's name for this version of ``adapter``: the folder's name plus a digest of its path and of its
    files' sizes and modification times, so a retrained adapter at the same path is a new name (vLLM
    keeps serving a loaded name as it was). Files that this process cannot see count as absent."""
    digest = hashlib.sha256(str(adapter).encode())
    if adapter.is_dir():
        for path in sorted(adapter.iterdir()):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{adapter.name or 'adapter'}-{digest.hexdigest()[:12]}"


def expand_greedy(samples: list[Sample], request: GenerationRequest) -> list[Sample]:
    """The one greedy sample repeated ``request.n`` times, each under its own recorded seed."""
    if request.temperature != 0 or len(samples) != 1 or request.n == 1:
        return samples
    return [replace(samples[0], seed=request.sample_seed(i)) for i in range(request.n)]


def parse_chat_response(payload: dict[str, Any], request: GenerationRequest) -> list[Sample]:
    """Samples from an OpenAI chat completion response, ordered by choice index."""
    try:
        choices = sorted(payload["choices"], key=lambda choice: int(choice["index"]))
        samples = [
            Sample(
                text=str(choice["message"].get("content") or ""),
                tokens=len(choice.get("token_ids") or []),
                seed=request.sample_seed(int(choice["index"])),
                finish_reason=str(choice.get("finish_reason") or ""),
                token_ids=tuple(int(token) for token in choice.get("token_ids") or ()),
            )
            for choice in choices
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"unexpected chat completion response shape: {exc!r}") from None
    samples = expand_greedy(samples, request)
    if len(samples) != request.n:
        raise EngineError(f"asked for {request.n} samples, the server returned {len(samples)}")
    return samples


class VllmOfflineEngine:
    """In-process ``vllm.LLM`` on a local model folder, for offline batch runs (needs vllm installed).

    ``llm_kwargs`` go to ``vllm.LLM`` (e.g. dtype, enforce_eager, max_model_len, gpu_memory_utilization).
    All requests of one ``generate`` call are submitted together, so vLLM batches them.
    """

    def __init__(self, model_dir: Path, *, model_id: str | None = None, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError:
            raise EngineError(
                "SPR_GENERATOR_ENGINE=vllm_offline needs the vllm package in this Python environment "
                "(or use SPR_GENERATOR_ENGINE=vllm with a vLLM server)"
            ) from None
        self._vllm = vllm
        self._llm = vllm.LLM(model=str(model_dir), **llm_kwargs)
        self._model_id = model_id or str(model_dir)

    @property
    def model_id(self) -> str:
        return self._model_id

    def close(self) -> None:
        del self._llm

    def generate(self, requests: list[GenerationRequest]) -> list[list[Sample]]:
        if not requests:
            return []
        urls: dict[int, str] = {}
        conversations = [openai_messages(request, urls) for request in requests]
        params = [self._vllm.SamplingParams(**sampling_fields(request)) for request in requests]
        outputs = self._llm.chat(conversations, params, use_tqdm=False)
        return [
            expand_greedy(
                [
                    Sample(
                        text=completion.text,
                        tokens=len(completion.token_ids),
                        seed=request.sample_seed(completion.index),
                        finish_reason=str(completion.finish_reason or ""),
                        token_ids=tuple(completion.token_ids),
                    )
                    for completion in sorted(output.outputs, key=lambda c: c.index)
                ],
                request,
            )
            for request, output in zip(requests, outputs, strict=True)
        ]
