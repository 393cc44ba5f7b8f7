"""Token length of a pair as the trainer will see it, counted before training (never truncated).

TRL's ``DataCollatorForVisionPreference`` builds, per pair, rows of the chat-templated prompt (its image
placeholder expanded by the processor into image tokens, a number that depends on the image's size)
followed by the chosen or the rejected response; the longer row is what ``max_length`` must hold. TRL
truncates longer rows; the spool rejects such pairs instead, because a cut drops image tokens or the
response's end.

:meth:`PairLengthMeasurer.exact` runs that collator on the pair. :meth:`PairLengthMeasurer.__call__`
gives the same number ~50x cheaper: it renders and tokenizes the texts exactly as the collator does, and
adds the image's expansion (processor tokens minus text tokens of the prompt), which is computed with
the full processor the first time an image size is seen and reused for that size afterwards. That holds
because a processor's image token count is a function of the image size (the premise of transformers'
``_get_num_multimodal_tokens`` and of vLLM's scheduler); the tests check the two paths agree.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from spr.shared.schemas import PreferencePair
from spr.trainer.dataset import trl_example
from spr.trainer.spool import PlaceholderInText, UnreadableImage

logger = logging.getLogger(__name__)


def open_image(path: Path) -> Any:
    """The image at ``path``, fully decoded, as an RGB PIL image; UnreadableImage when it cannot be.

    Decoding the whole file (not just its header) here means a truncated image is rejected at spool
    time instead of crashing a training run later.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"cannot decode image {path}: {exc}") from exc


class PairLengthMeasurer:
    """Callable ``(pair, image file) -> tokens`` for :class:`spr.trainer.spool.Spool` (see module doc).

    Give it a processor of its own when the training loop runs in another thread: a fast tokenizer
    must not be used from two threads at once.
    """

    def __init__(self, processor: Any) -> None:
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

        self._processor = processor
        self._collator = DataCollatorForVisionPreference(processor=processor, max_length=None)
        self._image_extra: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        # Placeholders the processor expands into image/video tokens (e.g. Qwen2-VL's <|image_pad|>).
        self._placeholders = [
            str(token)
            for token in (getattr(processor, "image_token", None), getattr(processor, "video_token", None))
            if token
        ]

    def __call__(self, pair: PreferencePair, image_file: Path) -> int:
        from trl.data_utils import apply_chat_template, prepare_multimodal_messages

        for field, text in (
            ("prompt", pair.prompt),
            ("chosen", pair.chosen.text),
            ("rejected", pair.rejected.text),
        ):
            for token in self._placeholders:
                if token in text:
                    raise PlaceholderInText(f"the {field} text contains the placeholder token {token}")
        image = open_image(image_file)
        # The collator's own text preparation (trl 1.16 DataCollatorForVisionPreference.torch_call).
        example = trl_example(pair, image)
        example["prompt"] = prepare_multimodal_messages(example["prompt"], images=example["images"])
        example["chosen"] = prepare_multimodal_messages(example["chosen"])
        example["rejected"] = prepare_multimodal_messages(example["rejected"])
        texts = apply_chat_template(example, self._processor)
        with self._lock:
            prompt, chosen, rejected = self._processor.tokenizer(
                [texts["prompt"], texts["chosen"], texts["rejected"]], add_special_tokens=False
            )["input_ids"]
            extra = self._image_extra.get(image.size)
            if extra is None:
                expanded = self._processor(images=[image], text=[texts["prompt"]], add_special_tokens=False)
                extra = len(expanded["input_ids"][0]) - len(prompt)
                self._image_extra[image.size] = extra
        return len(prompt) + extra + max(len(chosen), len(rejected))

    def exact(self, pair: PreferencePair, image_file: Path) -> int:
        """The length by running TRL's collator on the pair (slow; the reference for ``__call__``)."""
        with self._lock:
            batch = self._collator([trl_example(pair, open_image(image_file))])
        # One pair -> two rows (chosen, rejected) flushed left: the width is prompt + longer response.
        return int(batch["input_ids"].shape[1])
