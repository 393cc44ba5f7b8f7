"""Settings of the generator service (environment variables with prefix ``SPR_``).

Built once in the entry point (:func:`load_settings`) and passed in; nothing else reads the
environment. An invalid or missing setting fails at start-up with a message naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict
from spr.shared.operator_checks import check_model_folder
from spr.shared.schemas import GroundingFormat
from spr.shared.settings import ENV_PREFIX, QueueSettings, SettingsError

EngineName = Literal["transformers", "vllm", "vllm_offline"]

__all__ = ["ENV_PREFIX", "EngineName", "GeneratorSettings", "SettingsError", "load_settings"]


class GeneratorSettings(QueueSettings):
    """Everything ``spr generator run`` needs. Field ``x`` is read from ``SPR_X``."""

    model_config = SettingsConfigDict(frozen=True)
    service: ClassVar[str] = "generator"
    # A task (every prompt x k samples) can take minutes: a silent generator's tasks wait that long.
    default_visibility_timeout_s: ClassVar[float] = 600.0

    # The generator needs a data root: the working folder unless set.
    data_root: Path = Field(default=Path("."), description="Folder that RegionTask.image.path is under.")

    generator_engine: EngineName = Field(
        default="transformers",
        description="transformers: in-process (CPU/GPU); vllm: an OpenAI-compatible vLLM server; "
        "vllm_offline: in-process vllm.LLM (needs vllm installed).",
    )
    generator_model: Path | None = Field(
        default=None,
        description="Local model folder (config.json, weights, processor). Required for transformers and "
        "vllm_offline; for vllm it is optional and used for the grounding format and qwen25vl's resize rule.",
    )
    generator_adapter: Path | None = Field(
        default=None,
        description="A LoRA adapter folder (e.g. the last SPR round's adapter/), so the next round samples "
        "the trained policy. transformers: merged onto SPR_GENERATOR_MODEL at load; vllm: loaded into the "
        "running server (--enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), the path as the server "
        "sees it.",
    )
    generator_follow_policy: bool = Field(
        default=False,
        description="Before each task, load the newest policy the trainer announced on spr:policy (its "
        "adapter folder as this process sees it) and record it on the groups: the online loop.",
    )
    generator_model_id: str | None = Field(
        default=None, description="Model id recorded on candidate groups (default: served name or folder)."
    )
    generator_vllm_url: str = Field(default="http://localhost:8000", description="vLLM server base URL.")
    generator_served_model_name: str | None = Field(
        default=None, description="Model name the vLLM server serves (default: the only one it lists)."
    )
    generator_vllm_llm_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm_offline: extra vllm.LLM arguments as JSON, e.g. "
        '{"enforce_eager": true, "max_model_len": 8192, "gpu_memory_utilization": 0.85}.',
    )
    generator_format: GroundingFormat | None = Field(
        default=None, description="Grounding format override (default: from config.json's model_type)."
    )
    generator_prompts_file: Path | None = Field(
        default=None, description="YAML prompt templates (default: the set shipped with the package)."
    )
    generator_samples_per_prompt: int = Field(default=4, ge=1, le=64, description="k samples per prompt.")
    generator_temperature: float = Field(default=1.0, ge=0.0, le=5.0, description="0 means greedy.")
    generator_top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    generator_top_k: int = Field(
        default=0,
        ge=0,
        description="0 disables top-k. Sent explicitly so a checkpoint's generation_config (Qwen2-VL ships "
        "top_k=1) cannot silently turn sampling into greedy decoding.",
    )
    generator_max_new_tokens: int = Field(
        default=512, ge=1, le=32768, description="Most tokens generated per sample."
    )
    generator_seed: int = Field(default=0, ge=0, description="Base seed; per-task seeds derive from it.")
    generator_device: str = Field(
        default="cpu", description="torch device for transformers: cpu, cuda, cuda:1"
    )
    generator_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="transformers: weight dtype (auto = as saved)."
    )
    generator_torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="transformers: torch intra-op CPU threads (default: torch's choice, one per core). "
        "1 is far faster for small models on a shared CPU (no spinning threads fighting over cores).",
    )
    generator_concurrency: int = Field(
        default=32, ge=1, le=4096, description="vllm: HTTP requests in flight at once."
    )
    generator_worker_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Tasks processed at once by one worker process (raise it for vllm so the server's "
        "continuous batching stays full; keep 1 for transformers).",
    )
    generator_request_timeout_s: float = Field(
        default=600.0, gt=0, description="vllm: seconds before one HTTP request is abandoned."
    )
    generator_consumer: str | None = Field(
        default=None, description="Consumer name in the 'generators' group (default: host-pid)."
    )
    generator_log_every: int = Field(default=10, ge=1, description="Log throughput every N tasks.")
    generator_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus metrics on this port (default: off)."
    )

    @model_validator(mode="after")
    def _engine_needs(self) -> GeneratorSettings:
        if self.generator_engine in ("transformers", "vllm_offline") and self.generator_model is None:
            raise ValueError(
                f"SPR_GENERATOR_MODEL is required with SPR_GENERATOR_ENGINE={self.generator_engine}: "
                "set it to a local model folder"
            )
        if self.generator_model is not None and not (self.generator_model / "config.json").is_file():
            raise ValueError(
                f"SPR_GENERATOR_MODEL={self.generator_model} is not a model folder (no config.json there)"
            )
        if self.generator_model is not None:
            check_model_folder(self.generator_model, "SPR_GENERATOR_MODEL", "policy")
        if self.generator_prompts_file is not None and not self.generator_prompts_file.is_file():
            raise ValueError(f"SPR_GENERATOR_PROMPTS_FILE={self.generator_prompts_file} does not exist")
        if not self.data_root.is_dir():
            raise ValueError(f"SPR_DATA_ROOT={self.data_root} is not a folder")
        return self


def load_settings(**overrides: object) -> GeneratorSettings:
    """Read the settings from the environment (``overrides`` win); raise SettingsError naming each problem."""
    return GeneratorSettings.from_env(**overrides)
