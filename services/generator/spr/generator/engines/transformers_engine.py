"""In-process engine: transformers' AutoModelForImageTextToText + AutoProcessor from a local folder.

The embedded default (CPU, or one CUDA device). Requests run one after another; the ``n`` samples of
a request are drawn together, as the rows of one batched ``generate`` call (at most ``MAX_ROWS`` rows
a call) over copies of the prompt. Sampling does not touch torch's global RNG: row ``i`` draws its
tokens with its own ``torch.Generator`` seeded with ``seed + i`` (:class:`SeededSampler`, after
temperature, top-k and top-p), so sample ``i`` depends only on its seed, the model and the prompt,
and is reproducible on its own (see :mod:`spr.generator.engines.protocol`). Only floating point
may tell batch sizes apart: where kernels round differently at another batch size (possible on GPUs,
in low precision), a near-tied draw can differ from the same sample re-drawn with ``n = 1``; where
they are batch invariant (CPU, in the tests) the two match token for token. Greedy requests
(temperature 0) run one unbatched ``generate`` and copy its sample to every seed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spr.generator.engines.protocol import EngineError, GenerationRequest, ImagePart, Sample

if TYPE_CHECKING:
    import torch
    from transformers import BatchFeature

logger = logging.getLogger(__name__)

MAX_ROWS = 64
"""The most samples of one request drawn by one ``generate`` call (a bigger ``n`` takes several)."""


class TransformersEngine:
    """Generate with a local Hugging Face image-text-to-text checkpoint.

    ``device``: a torch device string ("cpu", "cuda", "cuda:1"). ``dtype``: "auto" keeps the
    checkpoint's dtype, or one of "float32", "bfloat16", "float16". ``torch_threads``: if given, the
    process's intra-op CPU threads (``torch.set_num_threads``, process-wide); small models on a busy
    CPU run much faster with 1 than with torch's default of one thread per core. ``adapter``: a peft
    LoRA folder (e.g. ``spr train``'s ``adapter/``) merged into the base weights at load, so generation
    runs at the base model's speed; the processor stays the base model's.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        model_id: str | None = None,
        torch_threads: int | None = None,
        adapter: Path | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)

        if not (model_dir / "config.json").is_file():
            raise EngineError(
                f"{model_dir} is not a model folder (no config.json): check SPR_GENERATOR_MODEL"
            )
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise EngineError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
        try:
            self._device = torch.device(device)
        except RuntimeError as exc:
            raise EngineError(f"SPR_GENERATOR_DEVICE={device!r} is not a torch device: {exc}") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"SPR_GENERATOR_DEVICE={device!r} but CUDA is not available here")
        torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
        auto_processor: Any = AutoProcessor
        auto_model: Any = AutoModelForImageTextToText
        self.processor: Any = auto_processor.from_pretrained(model_dir)
        model = auto_model.from_pretrained(model_dir, dtype=torch_dtype)
        if adapter is not None:
            model = _merge_adapter(model, adapter)
        self.model: Any = model.to(self._device).eval()
        self._model_dir = model_dir
        self._torch_dtype = torch_dtype
        self._model_id = model_id or (str(model_dir) if adapter is None else f"{model_dir}+{adapter}")
        eos = self.model.generation_config.eos_token_id
        self._eos_ids: set[int] = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        # One model: generate calls from several threads must not interleave.
        self._lock = threading.Lock()
        logger.info("transformers engine: %s on %s", self._model_id, self._device)

    @property
    def model_id(self) -> str:
        return self._model_id

    def close(self) -> None:
        """Nothing to release beyond what garbage collection frees."""

    def load_adapter(self, adapter: Path) -> None:
        """Sample from base + ``adapter`` from now on: the base is reloaded and the adapter merged into it
        (adapters of successive rounds are not stacked). Waits for a running ``generate`` to finish."""
        from transformers import AutoModelForImageTextToText

        if not (adapter / "adapter_config.json").is_file():
            raise EngineError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
        auto_model: Any = AutoModelForImageTextToText
        base = auto_model.from_pretrained(self._model_dir, dtype=self._torch_dtype)
        model = _merge_adapter(base, adapter).to(self._device).eval()
        with self._lock:
            self.model = model
        logger.info("transformers engine now samples %s + %s", self._model_dir, adapter)

    def prepare(self, request: GenerationRequest) -> BatchFeature:
        """The processor's model inputs for ``request`` (token ids, pixel values, image grids), on CPU."""
        messages = [
            {
                "role": message.role,
                "content": [
                    {"type": "image"} if isinstance(part, ImagePart) else {"type": "text", "text": part.text}
                    for part in message.content
                ],
            }
            for message in request.messages
        ]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = request.images
        return self.processor(text=[text], images=images or None, return_tensors="pt")  # type: ignore[no-any-return]

    def generate(self, requests: list[GenerationRequest]) -> list[list[Sample]]:
        return [self._generate_one(request) for request in requests]

    def _generate_one(self, request: GenerationRequest) -> list[Sample]:
        import torch
        from transformers import LogitsProcessorList

        inputs = self.prepare(request).to(self._device)
        prompt_len = int(inputs["input_ids"].shape[1])
        # sampling settings are never left to generate: SeededSampler draws, greedy picks its token
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "repetition_penalty": request.repetition_penalty,
        }
        with self._lock, torch.inference_mode():
            if request.temperature == 0.0:
                # greedy decoding gives the same text for every seed: one row, copied
                output = self._run(request, dict(inputs), kwargs)
                first = self._decode(output[0, prompt_len:].tolist(), request.sample_seed(0))
                return [first] + [replace(first, seed=request.sample_seed(i)) for i in range(1, request.n)]
            samples: list[Sample] = []
            for start in range(0, request.n, MAX_ROWS):
                seeds = [request.sample_seed(i) for i in range(start, min(start + MAX_ROWS, request.n))]
                try:
                    sampler = SeededSampler(
                        seeds,
                        temperature=request.temperature,
                        top_k=request.top_k,
                        top_p=request.top_p,
                        device=self._device,
                    )
                except ValueError as exc:  # settings transformers' warpers refuse
                    raise EngineError(f"generation failed for {request.tag or 'a request'}: {exc}") from exc
                output = self._run(
                    request,
                    _rows(inputs, len(seeds)),
                    {**kwargs, "logits_processor": LogitsProcessorList([sampler])},
                )
                samples += [
                    self._decode(output[row, prompt_len:].tolist(), seed) for row, seed in enumerate(seeds)
                ]
        return samples

    def _run(
        self, request: GenerationRequest, inputs: dict[str, Any], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        try:
            return self.model.generate(**inputs, **kwargs)  # type: ignore[no-any-return]
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"generation failed for {request.tag or 'a request'}: {exc}") from exc

    def _decode(self, new_ids: list[int], seed: int) -> Sample:
        end = next((i for i, token in enumerate(new_ids) if token in self._eos_ids), None)
        kept = new_ids if end is None else new_ids[:end]
        text = self.processor.tokenizer.decode(kept, skip_special_tokens=False)
        generated = new_ids if end is None else new_ids[: end + 1]
        return Sample(
            text=text,
            tokens=len(generated),
            seed=seed,
            finish_reason="length" if end is None else "stop",
            token_ids=tuple(generated),
        )


def _rows(inputs: BatchFeature, rows: int) -> dict[str, Any]:
    """The model inputs of one prompt (a batch of one) for ``rows`` copies of it, in one batch.

    Every tensor is ``rows`` copies of itself along its first dimension: per-row tensors (input ids,
    attention mask, token types) become a batch of ``rows`` identical rows, and per-image tensors
    (pixel values' patches, image grids) list the prompt's images once per row, in row order, as the
    model expects for a batch whose every row holds the same images.
    """
    import torch

    expanded: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            value = value.repeat(rows, *(1,) * (value.ndim - 1))
        elif isinstance(value, list):
            value = value * rows
        expanded[key] = value
    return expanded


class SeededSampler:
    """A transformers logits processor that samples each row of the batch with its own generator.

    Row ``i``'s scores (after generate's own processors, e.g. the repetition penalty) go through
    temperature, top-k (0 = off) and top-p exactly as transformers' sampling applies them; the next
    token is drawn from their softmax with ``torch.multinomial`` and row ``i``'s ``torch.Generator``
    (seeded with ``seeds[i]``); the scores returned are -inf everywhere but the drawn token, so that
    greedy decoding (``do_sample=False``) takes it. Each row's generator advances once a step whatever
    the other rows do, so row ``i``'s tokens depend only on its seed and its own scores. Rows that have
    finished keep drawing; generate replaces their tokens with padding.
    """

    def __init__(
        self, seeds: list[int], *, temperature: float, top_k: int, top_p: float, device: torch.device
    ) -> None:
        import torch
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self._generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        # the warpers and the order generate itself uses when do_sample=True
        warpers: list[Any] = []
        if temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(float(temperature)))
        if top_k != 0:
            warpers.append(TopKLogitsWarper(top_k=top_k))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=top_p))
        self._warpers = LogitsProcessorList(warpers)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        if scores.shape[0] != len(self._generators):
            raise ValueError(f"{scores.shape[0]} rows to sample but {len(self._generators)} seeds")
        probs = torch.softmax(self._warpers(input_ids, scores).float(), dim=-1)
        tokens = torch.cat(
            [
                torch.multinomial(probs[row], num_samples=1, generator=generator)
                for row, generator in enumerate(self._generators)
            ]
        )
        drawn = torch.full_like(scores, float("-inf"))
        drawn.scatter_(1, tokens[:, None], 0.0)
        return drawn  # type: ignore[return-value]


def _merge_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the peft LoRA adapter in folder ``adapter`` merged into its weights."""
    try:
        from peft import PeftModel
    except ImportError:
        raise EngineError("loading a LoRA adapter needs peft: pip install 'spr[eval]'") from None
    logger.info("merging LoRA adapter %s", adapter)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
