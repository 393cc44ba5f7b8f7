"""In-process engine: transformers' AutoModelForImageTextToText + AutoProcessor from a local folder.

The embedded default (CPU, or one CUDA device). Requests run one after another; the ``n`` samples of
a request are drawn one by one, sample ``i`` under ``torch.manual_seed(seed + i)``, so each sample is
reproducible on its own (see :mod:`spr.generator.engines.protocol`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spr.generator.engines.protocol import EngineError, GenerationRequest, ImagePart, Sample

if TYPE_CHECKING:
    from transformers import BatchFeature

logger = logging.getLogger(__name__)


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
        self._model_id = model_id or (str(model_dir) if adapter is None else f"{model_dir}+{adapter}")
        eos = self.model.generation_config.eos_token_id
        self._eos_ids: set[int] = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        # One model, one global torch RNG: generate calls from several threads must not interleave.
        self._lock = threading.Lock()
        logger.info("transformers engine: %s on %s", self._model_id, self._device)

    @property
    def model_id(self) -> str:
        return self._model_id

    def close(self) -> None:
        """Nothing to release beyond what garbage collection frees."""

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

        inputs = self.prepare(request).to(self._device)
        prompt_len = int(inputs["input_ids"].shape[1])
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_new_tokens}
        greedy = request.temperature == 0.0
        if greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=request.top_k,
            )
        kwargs["repetition_penalty"] = request.repetition_penalty
        samples: list[Sample] = []
        with self._lock, torch.inference_mode():
            for index in range(request.n):
                seed = request.sample_seed(index)
                if greedy and samples:
                    samples.append(replace(samples[0], seed=seed))
                    continue  # greedy decoding gives the same text for every seed
                torch.manual_seed(seed)
                try:
                    output = self.model.generate(**inputs, **kwargs)
                except (RuntimeError, ValueError) as exc:
                    raise EngineError(f"generation failed for {request.tag or 'a request'}: {exc}") from exc
                samples.append(self._decode(output[0, prompt_len:].tolist(), seed))
        return samples

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


def _merge_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the peft LoRA adapter in folder ``adapter`` merged into its weights."""
    try:
        from peft import PeftModel
    except ImportError:
        raise EngineError("loading a LoRA adapter needs peft: pip install 'spr[eval]'") from None
    logger.info("merging LoRA adapter %s", adapter)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
