"""The paper's "SFT on the chosen answers" ablation: the same pairs, the same LoRA, plain supervised
training on each pair's chosen text instead of DPO.

The LoRA shape (rank, alpha, dropout, target modules) is read from the DPO run's own adapter, so both
arms adapt the same weights; learning rate, epochs and batch size default to the tiny CPU trainer
config's (1e-4, 1, 2). The result is a peft adapter folder that `spr eval --adapter` loads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from spr.bench.sft_data import Encoder, SftExample
from spr.shared.errors import SprError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChosenSftConfig:
    learning_rate: float = 1e-4
    epochs: int = 1
    batch_size: int = 2
    threads: int | None = None
    seed: int = 0


def chosen_examples(spool: Path) -> list[SftExample]:
    """Every spooled pair's canonical prompt and chosen text (image paths absolute, as spooled)."""
    from spr.trainer.spool import read_spool

    return [
        SftExample(record.image_file, record.pair.prompt, record.pair.chosen.text, "chosen")
        for record in read_spool(spool)
    ]


def train_on_chosen(
    baseline: Path,
    spool: Path,
    dpo_adapter: Path,
    out: Path,
    config: ChosenSftConfig,
    *,
    pairs: tuple[int, int] | None = None,
    start_from: Path | None = None,
) -> Path:
    """Train a LoRA shaped like ``dpo_adapter`` on ``baseline`` with the chosen texts in ``spool``;
    writes the adapter (and processor) to ``out`` and returns it.

    ``pairs``: only the spool's pairs ``[start, end)`` in spool order (one SPR round's, as the
    trainer's round ledger names them); ``start_from``: continue this adapter (the previous round's
    SFT-on-chosen arm) instead of a fresh LoRA, as DPO continues its own from round to round."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    examples = chosen_examples(spool)
    if pairs is not None:
        examples = examples[pairs[0] : pairs[1]]
    if not examples:
        raise SprError(f"spool {spool} holds no pairs: nothing to train on")
    shape = json.loads((dpo_adapter / "adapter_config.json").read_text(encoding="utf-8"))
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    auto_model: Any = AutoModelForImageTextToText
    auto_processor: Any = AutoProcessor
    processor = auto_processor.from_pretrained(baseline)
    base = auto_model.from_pretrained(baseline, dtype=torch.float32)
    lora = LoraConfig(
        r=shape["r"],
        lora_alpha=shape["lora_alpha"],
        lora_dropout=shape["lora_dropout"],
        target_modules=shape["target_modules"],
        task_type="CAUSAL_LM",
    )
    if start_from is not None:
        from peft import PeftModel

        model: Any = PeftModel.from_pretrained(base, str(start_from), is_trainable=True)
    else:
        model = get_peft_model(base, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    # Images are absolute paths in the spool; Path("/") / absolute is the absolute path itself.
    encoder = Encoder(processor, Path("/"))
    rng = np.random.default_rng([config.seed, 13])
    model.train()
    steps = 0
    for _ in range(config.epochs):
        order = rng.permutation(len(examples))
        for start in range(0, len(order), config.batch_size):
            batch = encoder.batch([examples[int(i)] for i in order[start : start + config.batch_size]])
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info("SFT on %d chosen answers: %d steps -> %s", len(examples), steps, out)
    return out
