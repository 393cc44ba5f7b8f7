"""The engine interface: chat requests with images in, k sampled texts per request out.

Seeds: a request carries one ``seed``; sample ``i`` of the request is drawn with seed ``seed + i``.
That is exactly how vLLM fans a request with ``n`` samples out into child requests (child ``i`` gets
``seed + i``), so every sample is reproducible on its own, by either engine, with ``n = 1`` and
seed ``seed + i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from spr.shared.errors import SprError

if TYPE_CHECKING:
    from PIL.Image import Image

# Seeds stay below 2**31 so that seed + i fits every backend's seed type (vLLM, torch, numpy).
MAX_SEED = 2**31 - 1


class EngineError(SprError):
    """The engine could not produce samples (server unreachable, bad response, model failure)."""


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image, in its original pixels; the engine's processor resizes it as the model requires."""

    image: Image


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: tuple[TextPart | ImagePart, ...]

    @property
    def images(self) -> list[Image]:
        return [part.image for part in self.content if isinstance(part, ImagePart)]


@dataclass(frozen=True)
class GenerationRequest:
    """One conversation to complete ``n`` times.

    temperature 0 means greedy decoding (then every sample is the same). top_k 0 disables top-k, and
    repetition_penalty 1.0 disables that: both are always sent, so a checkpoint's generation_config
    defaults cannot change sampling behind the settings' back.
    """

    messages: tuple[ChatMessage, ...]
    n: int
    seed: int
    temperature: float
    top_p: float
    max_new_tokens: int
    top_k: int = 0
    repetition_penalty: float = 1.0
    tag: str = field(default="", compare=False)  # for logs only (e.g. task id / prompt id)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("GenerationRequest.n must be >= 1")
        if self.seed < 0 or self.seed + self.n - 1 > MAX_SEED:
            raise ValueError(f"GenerationRequest.seed must be in [0, {MAX_SEED} - n + 1]")
        if self.max_new_tokens < 1:
            raise ValueError("GenerationRequest.max_new_tokens must be >= 1")

    @property
    def images(self) -> list[Image]:
        return [image for message in self.messages for image in message.images]

    def sample_seed(self, index: int) -> int:
        """The seed sample ``index`` is drawn with."""
        return self.seed + index


@dataclass(frozen=True)
class Sample:
    """One generated completion: its text (special tokens kept, end-of-sequence dropped), the number
    of tokens generated and their ids (both including the end-of-sequence token when there was one).

    Engines may differ in how they render token sequences that are not valid UTF-8 at the very end
    (vLLM holds back an incomplete character, transformers writes U+FFFD): compare ``token_ids``.
    """

    text: str
    tokens: int
    seed: int
    finish_reason: str = ""
    token_ids: tuple[int, ...] = ()


class Engine(Protocol):
    """Anything that completes chat requests. Results are in request order, ``n`` samples each, in
    sample order. Implementations may run requests concurrently; ``generate`` blocks until all are done.
    """

    @property
    def model_id(self) -> str: ...

    def generate(self, requests: list[GenerationRequest]) -> list[list[Sample]]: ...

    def close(self) -> None: ...
