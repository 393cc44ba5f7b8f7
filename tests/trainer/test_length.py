"""The pre-training length check counts what TRL will feed the model: template + image tokens + response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spr.trainer.dataset import prompt_messages, response_messages
from spr.trainer.length import PairLengthMeasurer, open_image
from spr.trainer.spool import Spool, UnreadableImage
from trainer_fixtures import MakePair


@pytest.fixture(scope="module")
def processor(tiny_qwen2vl: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen2vl)  # type: ignore[no-untyped-call]


def _independent_count(processor: Any, image_file: Path, prompt: str, response: str) -> int:
    """Whole conversation tokenized at once, the one image placeholder expanded to its grid's tokens."""
    grid = processor.image_processor(images=[open_image(image_file)])["image_grid_thw"]
    image_tokens = int(grid.prod()) // int(processor.image_processor.merge_size) ** 2
    text = processor.apply_chat_template(
        prompt_messages(prompt) + response_messages(response), tokenize=False
    )
    text_tokens: int = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    return text_tokens - 1 + image_tokens


def test_count_matches_an_independent_tokenization(
    processor: Any, data_root: Path, pairs_factory: MakePair
) -> None:
    measure = PairLengthMeasurer(processor)
    for index in range(4):  # four image sizes -> different image token counts
        pair = pairs_factory(index)
        image = data_root / pair.image.path
        expected = _independent_count(processor, image, pair.prompt, pair.chosen.text)
        assert measure(pair, image) == expected


def test_size_cached_count_equals_trls_collator_on_every_pair(
    processor: Any, data_root: Path, pairs_factory: MakePair
) -> None:
    measure = PairLengthMeasurer(processor)
    pairs = [pairs_factory(i) for i in range(8)]  # two pairs per image size: the second hits the cache
    pairs.append(pairs_factory(8, chosen="<|object_ref_start|>x<|object_ref_end|> " * 7, rejected="no"))
    pairs.append(pairs_factory(9, rejected="a rejected answer that is the longer one " * 3))
    for pair in pairs:
        image = data_root / pair.image.path
        assert measure(pair, image) == measure.exact(pair, image), pair.pair_id


def test_count_follows_the_longer_response_and_the_image_size(
    processor: Any, data_root: Path, pairs_factory: MakePair
) -> None:
    measure = PairLengthMeasurer(processor)
    short = pairs_factory(0)
    image = data_root / short.image.path
    long_rejected = pairs_factory(0, rejected="a much longer rejected answer " * 10)
    assert measure(long_rejected, image) > measure(short, image)
    assert measure(long_rejected, image) == _independent_count(
        processor, image, short.prompt, long_rejected.rejected.text
    )
    small, large = data_root / "images/img-003.png", data_root / "images/img-001.png"  # 64x64, 120x96
    assert measure(short, large) > measure(short, small)


def test_unreadable_image_raises_unreadable(processor: Any, tmp_path: Path, pairs_factory: MakePair) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(UnreadableImage, match="cannot decode"):
        PairLengthMeasurer(processor)(pairs_factory(0), broken)


def test_spool_with_the_processor_rejects_only_pairs_over_max_length(
    processor: Any, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    measure = PairLengthMeasurer(processor)
    fits = pairs_factory(0)
    limit = measure(fits, data_root / fits.image.path)
    longer = pairs_factory(4, chosen=fits.chosen.text + " and more")  # same image, another pair
    with Spool(tmp_path / "s", data_root=data_root, max_length=limit, measure=measure) as spool:
        added, rejected = spool.append_many([fits, longer])
    assert (added.status, added.tokens) == ("added", limit)  # exactly max_length is allowed
    assert (rejected.status, rejected.reason) == ("rejected", "too_long")
    assert rejected.tokens is not None and rejected.tokens > limit


def test_pair_with_an_image_placeholder_in_its_text_is_rejected(
    processor: Any, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    # A (badly trained) policy can write <|image_pad|> itself; the processor would expand it into image
    # tokens with no image behind them and TRL would fail mid-training, so the spool rejects the pair.
    measure = PairLengthMeasurer(processor)
    fits = pairs_factory(0)
    bad = pairs_factory(1, rejected="a red circle <|image_pad|> left")
    with Spool(tmp_path / "s", data_root=data_root, max_length=100_000, measure=measure) as spool:
        added, rejected = spool.append_many([fits, bad])
        assert spool.stats().rejected == {"placeholder_in_text": 1}
    assert added.status == "added"
    assert (rejected.status, rejected.reason) == ("rejected", "placeholder_in_text")
