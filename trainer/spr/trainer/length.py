"""Token length of a pair as the trainer will see it, counted before training (never truncated).

The count is made by TRL's own ``DataCollatorForVisionPreference`` on the single pair, so it is exactly
the length its training batch rows have: the chat-templated prompt with the image expanded into image
tokens by the processor (which depends on the image's size), plus the longer of the two responses.
TRL truncates sequences above ``max_length``; the spool rejects such pairs instead, because a cut in
the wrong place drops image tokens or the response's end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spr.shared.schemas import PreferencePair
from spr.trainer.dataset import trl_example
from spr.trainer.spool import UnreadableImage

logger = logging.getLogger(__name__)


def open_image(path: Path) -> Any:
    """The image at ``path`` as an RGB PIL image; UnreadableImage when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"cannot decode image {path}: {exc}") from exc


class PairLengthMeasurer:
    """Callable ``(pair, image file) -> tokens`` for :class:`spr.trainer.spool.Spool`.

    Give it a processor of its own when the training loop runs in another thread: a fast tokenizer
    must not be used from two threads at once.
    """

    def __init__(self, processor: Any) -> None:
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

        self._collator = DataCollatorForVisionPreference(processor=processor, max_length=None)

    def __call__(self, pair: PreferencePair, image_file: Path) -> int:
        batch = self._collator([trl_example(pair, open_image(image_file))])
        # One pair -> two rows (chosen, rejected) flushed left: the width is prompt + longer response.
        return int(batch["input_ids"].shape[1])
