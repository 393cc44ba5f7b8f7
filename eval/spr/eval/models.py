"""The model under evaluation: a generator engine, its grounding format and its coordinate rule.

Engines are the generator's (:mod:`spr.generator.engines`): ``transformers`` runs a local checkpoint
in-process (optionally base + LoRA adapter, merged at load), ``vllm`` talks to a running vLLM server
configured by the generator's ``SPR_GENERATOR_*`` settings (URL, served model name, concurrency).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spr.eval.prompting import AnswerParser
from spr.shared.errors import SprError
from spr.shared.formats import in_resized_image
from spr.shared.formats.reader import format_of_model, resize_rule_of
from spr.shared.schemas import GroundingFormat

if TYPE_CHECKING:
    from spr.generator.engines.protocol import Engine

logger = logging.getLogger(__name__)

EvalEngine = Literal["transformers", "vllm"]


@dataclass(frozen=True)
class ModelSpec:
    """Which model to evaluate and how to run it.

    ``model``: the local model folder (required for transformers; for vllm optional, used for the
    grounding format and qwen25vl's resize rule). ``adapter``: a peft LoRA folder merged onto ``model``
    (transformers only). ``format``: the grounding format (default: from the model's config.json).
    ``device``/``dtype``/``torch_threads``: the transformers engine's (see TransformersEngine).
    """

    engine: EvalEngine = "transformers"
    model: Path | None = None
    adapter: Path | None = None
    format: GroundingFormat | None = None
    device: str = "cpu"
    dtype: str = "auto"
    torch_threads: int | None = None


@dataclass
class EvalModel:
    """A loaded engine with the parser of its answers."""

    engine: Engine
    parser: AnswerParser
    model_id: str

    @property
    def format(self) -> GroundingFormat:
        return self.parser.format

    def close(self) -> None:
        self.engine.close()


def resolve_format(spec: ModelSpec) -> GroundingFormat:
    """``spec.format``, else the model family's format (config.json ``model_type``)."""
    if spec.format is not None:
        return spec.format
    if spec.model is None:
        raise SprError("cannot tell the grounding format: give --format, or --model (the local model folder)")
    from spr.shared.operator_checks import check_model_folder

    check_model_folder(spec.model, "--model", "policy")
    return format_of_model(spec.model, fix="give --format")


def answer_parser(spec: ModelSpec, processor: Any | None = None) -> AnswerParser:
    """The parser for the spec's format; the resize rule (formats in resized-image pixels) comes from
    ``processor`` (a loaded processor) or from the model folder's image processor."""
    fmt = resolve_format(spec)
    rule = (
        resize_rule_of(
            processor,
            spec.model,
            fix="give --model (the model folder, whose preprocessor_config.json holds the resize rule)",
        )
        if in_resized_image(fmt)
        else None
    )
    return AnswerParser(format=fmt, resize_rule=rule)


def load_model(spec: ModelSpec, **settings_overrides: object) -> EvalModel:
    """Build the engine the spec names (weights load here) and the parser of its answers.

    ``settings_overrides`` go to the generator's settings for the vllm engine (e.g. ``data_root``).
    """
    resolve_format(spec)  # fail on the format before loading any weights
    if spec.engine == "transformers":
        from spr.generator.engines.transformers_engine import TransformersEngine

        if spec.model is None:
            raise SprError("--model DIR is required with --engine transformers (a local model folder)")
        engine = TransformersEngine(
            spec.model,
            device=spec.device,
            dtype=spec.dtype,
            torch_threads=spec.torch_threads,
            adapter=spec.adapter,
        )
        return EvalModel(engine, answer_parser(spec, engine.processor), engine.model_id)
    if spec.adapter is not None:
        raise SprError(
            "--adapter works with --engine transformers; with vLLM, serve the adapter (vllm serve BASE "
            "--enable-lora --lora-modules spr=ADAPTER) and set SPR_GENERATOR_SERVED_MODEL_NAME=spr"
        )
    from spr.generator.factory import build_engine
    from spr.generator.settings import load_settings

    overrides: dict[str, object] = {"generator_engine": "vllm", **settings_overrides}
    if spec.model is not None:
        overrides["generator_model"] = spec.model
    settings = load_settings(**overrides)
    engine_ = build_engine(settings)
    return EvalModel(engine_, answer_parser(spec), engine_.model_id)
