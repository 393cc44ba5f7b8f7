"""Region task -> candidate group: build the prompt set, sample k descriptions per prompt, parse them.

Seeds (all reproducible from the settings' base seed):
``task_seed = H(base seed, task id)``; for prompt template ``p``, ``prompt_seed = H(task_seed, p)``;
sample ``i`` of that prompt is drawn with ``prompt_seed + i`` and records it (the engines' contract).

Coordinates: every box on a candidate is in original-image pixels. Boxes of a ``coords: crop`` template
are parsed in the crop's pixels as sent, then mapped back; Qwen2.5-VL's absolute coordinates are
parsed against the processor-resized size (recorded on the group as ``resized_size``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spr.generator.coordinates import phrases_to_image
from spr.generator.engines.protocol import (
    MAX_SEED,
    ChatMessage,
    Engine,
    GenerationRequest,
    ImagePart,
    Sample,
    TextPart,
)
from spr.generator.prompts import BuiltPrompt, PromptSet
from spr.shared.errors import SprError
from spr.shared.formats import in_resized_image
from spr.shared.formats.reader import GroundingReader, ResizeRule
from spr.shared.schemas import (
    Candidate,
    CandidateGroup,
    GroundingFormat,
    ParseProblem,
    Phrase,
    PolicyVersion,
    RegionTask,
    Size,
)

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)


class TaskError(SprError):
    """A task that can never succeed as given (missing image, image size mismatch, path outside root)."""


@dataclass(frozen=True)
class SamplingConfig:
    """How candidates are sampled. temperature 0 = greedy; top_k 0 = off."""

    samples_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 512
    seed: int = 0


def derive_seed(*parts: object, span: int = 1) -> int:
    """A seed in ``[0, MAX_SEED - span + 1]`` from ``parts`` (stable across processes and platforms)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED - span + 2)


@dataclass(frozen=True)
class PreparedTask:
    """A task with its prompts built and its engine requests ready (one request per prompt)."""

    task: RegionTask
    prompts: list[BuiltPrompt]
    requests: list[GenerationRequest]
    resized_size: Size | None


class CandidateGenerator:
    """Turns region tasks into candidate groups with one engine, prompt set and grounding format.

    ``resize_rule`` is required for the formats whose boxes are in processor-resized pixels (qwen25vl);
    answers are read by the shared :class:`~spr.shared.formats.reader.GroundingReader`.
    """

    def __init__(
        self,
        engine: Engine,
        prompts: PromptSet,
        fmt: GroundingFormat,
        sampling: SamplingConfig,
        *,
        data_root: Path,
        resize_rule: ResizeRule | None = None,
        model_id: str | None = None,
    ) -> None:
        if resize_rule is None and in_resized_image(fmt):
            raise SprError(
                f"the {fmt} format needs the processor's resize rule: set SPR_GENERATOR_MODEL to the "
                "local model folder (its preprocessor_config.json holds the rule)"
            )
        self.reader = GroundingReader(fmt, resize_rule)
        self.engine = engine
        self.prompts = prompts
        self.format: GroundingFormat = fmt
        self.sampling = sampling
        self.data_root = data_root
        self.resize_rule = resize_rule
        self.model_id = model_id or engine.model_id
        # The policy sampling now (set by spr.generator.policy_follow); recorded on every group.
        self.policy: PolicyVersion | None = None

    def load_image(self, task: RegionTask) -> Image:
        """The task's image from the data root, as RGB. Raises TaskError if missing or mismatched."""
        from PIL import Image as PILImage
        from PIL import UnidentifiedImageError

        root = self.data_root.resolve()
        path = (root / task.image.path).resolve()
        if not path.is_relative_to(root):
            raise TaskError(f"task {task.task_id}: image path {task.image.path!r} leaves the data root")
        try:
            with PILImage.open(path) as image:
                rgb = image.convert("RGB")
        except FileNotFoundError:
            raise TaskError(
                f"task {task.task_id}: image {task.image.path} not found under SPR_DATA_ROOT={self.data_root}"
            ) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise TaskError(f"task {task.task_id}: cannot read image {task.image.path}: {exc}") from None
        if rgb.size != (task.image.width, task.image.height):
            raise TaskError(
                f"task {task.task_id}: image {task.image.path} is {rgb.size[0]}x{rgb.size[1]} pixels, the "
                f"task says {task.image.width}x{task.image.height}"
            )
        return rgb

    def resized_size(self, width: int, height: int) -> Size | None:
        """The processor-resized size (None for formats whose boxes are not in resized pixels)."""
        return self.reader.resized_size(width, height)

    def prepare(self, task: RegionTask, image: Image | None = None) -> PreparedTask:
        """Prompts and engine requests for ``task`` (``image``: the loaded original, else read from disk)."""
        image = self.load_image(task) if image is None else image
        resized = self.resized_size(task.image.width, task.image.height)
        built = self.prompts.build(task, image, self.format, resized_size=resized)
        base = derive_seed(self.sampling.seed, task.task_id)
        k = self.sampling.samples_per_prompt
        requests = [
            GenerationRequest(
                messages=to_messages(prompt),
                n=k,
                seed=derive_seed(base, prompt.record.prompt_id, span=k),
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                top_k=self.sampling.top_k,
                max_new_tokens=self.sampling.max_new_tokens,
                tag=f"{task.task_id}/{prompt.record.prompt_id}",
            )
            for prompt in built
        ]
        return PreparedTask(task=task, prompts=built, requests=requests, resized_size=resized)

    def generate(self, tasks: list[RegionTask]) -> list[CandidateGroup]:
        """One candidate group per task, in order. All requests go to the engine in one call."""
        prepared = [self.prepare(task) for task in tasks]
        requests = [request for item in prepared for request in item.requests]
        results = self.engine.generate(requests)
        groups = []
        offset = 0
        for item in prepared:
            count = len(item.requests)
            groups.append(self.assemble(item, results[offset : offset + count]))
            offset += count
        return groups

    def assemble(self, item: PreparedTask, results: list[list[Sample]]) -> CandidateGroup:
        """The candidate group of a prepared task from the engine's samples (one list per request)."""
        candidates = []
        for prompt, samples in zip(item.prompts, results, strict=True):
            for index, sample in enumerate(samples):
                phrases, problems = self.parse(sample.text, item.task, prompt, item.resized_size)
                candidates.append(
                    Candidate(
                        id=f"{item.task.task_id}/{prompt.record.prompt_id}/{index}",
                        prompt_id=prompt.record.prompt_id,
                        prompt_type=prompt.record.type,
                        sample_index=index,
                        seed=sample.seed,
                        text=sample.text,
                        phrases=phrases,
                        problems=problems,
                        tokens=sample.tokens,
                    )
                )
        canonical_id = self.prompts.canonical.id
        canonical = next(p.record.text for p in item.prompts if p.record.prompt_id == canonical_id)
        return CandidateGroup(
            task=item.task,
            model_id=self.model_id,
            format=self.format,
            resized_size=item.resized_size,
            canonical_prompt=canonical,
            prompts=[prompt.record for prompt in item.prompts],
            candidates=candidates,
            policy=self.policy,
        )

    def parse(
        self, text: str, task: RegionTask, prompt: BuiltPrompt, resized_size: Size | None
    ) -> tuple[list[Phrase], list[ParseProblem]]:
        """Phrases (boxes in original-image pixels) and parse problems of one model output."""
        from spr.shared.formats import parse

        if prompt.coords == "crop" and prompt.crop is not None:
            sent = prompt.images[1].size
            result = self.reader.parse(text, Size(width=sent[0], height=sent[1]))
            return phrases_to_image(result.phrases, prompt.crop, sent), result.problems
        result = parse(
            text,
            self.format,
            image_size=Size(width=task.image.width, height=task.image.height),
            resized_size=resized_size,
        )
        return result.phrases, result.problems


def to_messages(prompt: BuiltPrompt) -> tuple[ChatMessage, ...]:
    """The chat conversation for a built prompt: optional system message, then images before the text."""
    messages = []
    if prompt.template.system:
        messages.append(ChatMessage(role="system", content=(TextPart(prompt.template.system),)))
    content: tuple[TextPart | ImagePart, ...] = (
        *(ImagePart(image) for image in prompt.images),
        TextPart(prompt.record.text),
    )
    messages.append(ChatMessage(role="user", content=content))
    return tuple(messages)
