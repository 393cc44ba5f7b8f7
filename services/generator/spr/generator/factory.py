"""Build the generator a process runs from its settings: grounding format, engine, resize rule, prompts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from spr.generator.engines.protocol import Engine
from spr.generator.generation import CandidateGenerator, SamplingConfig
from spr.generator.prompts import PromptSet
from spr.generator.settings import GeneratorSettings
from spr.shared.errors import SprError
from spr.shared.formats import in_resized_image
from spr.shared.formats.reader import ResizeRule, format_of_model, resize_rule_of
from spr.shared.schemas import GroundingFormat, PolicyVersion

logger = logging.getLogger(__name__)


def resolve_format(settings: GeneratorSettings) -> GroundingFormat:
    """The grounding format: SPR_GENERATOR_FORMAT, else the model family's (config.json model_type)."""
    if settings.generator_format is not None:
        return settings.generator_format
    if settings.generator_model is None:
        raise SprError(
            "cannot tell the grounding format: set SPR_GENERATOR_FORMAT, or SPR_GENERATOR_MODEL to the "
            "local model folder (its config.json names the model family)"
        )
    return format_of_model(settings.generator_model, fix="set SPR_GENERATOR_FORMAT")


def cpu_advice(settings: GeneratorSettings, cpu_count: int | None = None) -> str | None:
    """A warning for in-process generation on the CPU with settings that make it look hung, else None.

    Torch's default (one intra-op thread per core) spins threads that fight over a shared or busy CPU,
    and the default 512 new tokens x every prompt x k samples is minutes per task for a real model.
    """
    if settings.generator_engine != "transformers" or not settings.generator_device.startswith("cpu"):
        return None
    problems = []
    if settings.generator_torch_threads is None:
        cores = os.cpu_count() if cpu_count is None else cpu_count
        problems.append(
            f"torch will use its default of one thread per core ({cores}); on a shared or busy CPU set "
            "SPR_GENERATOR_TORCH_THREADS=1 (often several times faster for small models)"
        )
    per_task = settings.generator_samples_per_prompt * settings.generator_max_new_tokens
    if per_task > 256:
        problems.append(
            f"each prompt samples {settings.generator_samples_per_prompt} x up to "
            f"{settings.generator_max_new_tokens} tokens; for a quick CPU run lower "
            "SPR_GENERATOR_MAX_NEW_TOKENS (e.g. 64) or SPR_GENERATOR_SAMPLES_PER_PROMPT"
        )
    if not problems:
        return None
    return "generating on the CPU (SPR_GENERATOR_DEVICE=cpu): " + "; ".join(problems)


def build_engine(settings: GeneratorSettings) -> Engine:
    """The engine the settings name (models load here)."""
    if settings.generator_engine == "transformers":
        advice = cpu_advice(settings)
        if advice is not None:
            logger.warning("%s", advice)
        from spr.generator.engines.transformers_engine import TransformersEngine

        return TransformersEngine(
            _model_folder(settings),
            device=settings.generator_device,
            dtype=settings.generator_dtype,
            model_id=settings.generator_model_id,
            torch_threads=settings.generator_torch_threads,
            adapter=settings.generator_adapter,
        )
    if settings.generator_engine == "vllm":
        from spr.generator.engines.vllm_engine import VllmServerEngine

        return VllmServerEngine(
            settings.generator_vllm_url,
            settings.generator_served_model_name,
            concurrency=settings.generator_concurrency,
            timeout_s=settings.generator_request_timeout_s,
            model_id=settings.generator_model_id,
            adapter=settings.generator_adapter,
        )
    if settings.generator_adapter is not None:
        raise SprError(
            "SPR_GENERATOR_ADAPTER works with SPR_GENERATOR_ENGINE=transformers or vllm (a server started "
            "with --enable-lora); with vllm_offline, merge it (spr train --merge-adapter true) and set "
            "SPR_GENERATOR_MODEL to <output_dir>/merged"
        )
    from spr.generator.engines.vllm_engine import VllmOfflineEngine

    return VllmOfflineEngine(
        _model_folder(settings),
        model_id=settings.generator_model_id,
        **{
            "dtype": settings.generator_dtype,
            "seed": settings.generator_seed,
            **settings.generator_vllm_llm_kwargs,
        },
    )


def _model_folder(settings: GeneratorSettings) -> Path:
    if settings.generator_model is None:
        raise SprError(
            f"SPR_GENERATOR_MODEL is required with SPR_GENERATOR_ENGINE={settings.generator_engine}"
        )
    return settings.generator_model


def build_resize_rule(settings: GeneratorSettings, engine: Engine) -> ResizeRule:
    """The processor's resize rule (formats in resized-image pixels), from the engine's processor or
    the model folder's image processor."""
    return resize_rule_of(
        getattr(engine, "processor", None),
        settings.generator_model,
        fix="set SPR_GENERATOR_MODEL to the local model folder so its resize rule can be read",
    )


def build_generator(settings: GeneratorSettings, engine: Engine | None = None) -> CandidateGenerator:
    """A ready generator: prompts and format checked first (cheap), then the engine (``engine`` if given)."""
    prompts = PromptSet.load(settings.generator_prompts_file)
    fmt = resolve_format(settings)
    engine = build_engine(settings) if engine is None else engine
    generator = CandidateGenerator(
        engine,
        prompts,
        fmt,
        SamplingConfig(
            samples_per_prompt=settings.generator_samples_per_prompt,
            temperature=settings.generator_temperature,
            top_p=settings.generator_top_p,
            top_k=settings.generator_top_k,
            max_new_tokens=settings.generator_max_new_tokens,
            seed=settings.generator_seed,
        ),
        data_root=settings.data_root,
        resize_rule=build_resize_rule(settings, engine) if in_resized_image(fmt) else None,
        model_id=settings.generator_model_id,
    )
    generator.policy = initial_policy(settings, generator.model_id)
    return generator


def initial_policy(settings: GeneratorSettings, model_id: str) -> PolicyVersion | None:
    """The policy recorded on groups before any announcement: the base model (round 0), or the version a
    published adapter folder records; None for an adapter from elsewhere (its round is unknown)."""
    from spr.shared.policy import read_policy_file

    if settings.generator_adapter is None:
        return PolicyVersion(model_id=model_id, round=0)
    return read_policy_file(settings.generator_adapter)
