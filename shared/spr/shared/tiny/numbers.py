"""Number tokens for the tiny Qwen2-VL: one vocabulary token per integer ``0..high``.

A Qwen2 tokenizer splits digits one per token, so a box on the 0-1000 grid costs twelve digit tokens
and a model trained from scratch has to learn place value before it can learn where an object is.
With one token per integer a box is four tokens, and each number token's input and output embedding
rows start from a sin-cos code of its value, so neighbouring values start out similar: a model that
is off by a few grid units is nearly right from its first step.

The text format does not change: the integers are *added tokens* (matched longest first, before the
BPE), so ``"[123, 45, 6, 999]"`` encodes to four number tokens and decodes back byte-identical, and
every parser reads the text as before. Integers above ``high`` still encode (as two number tokens or
digits), so nothing becomes unencodable.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Shortest and longest period (in grid units) of the sin-cos code: the fastest pair tells apart
# neighbours, the slowest spans the whole 0-1000 grid without wrapping.
_SHORTEST_PERIOD: Final = 4.0
_LONGEST_PERIOD: Final = 4000.0


def add_number_tokens(tokenizer: PreTrainedTokenizerBase, high: int) -> list[int]:
    """Add one token per integer ``0..high`` (inclusive) to ``tokenizer``; returns their ids in value
    order. Raises ValueError when ``high`` is negative."""
    from tokenizers import AddedToken

    if high < 0:
        raise ValueError(f"number tokens need high >= 0, got {high}")
    values = [str(value) for value in range(high + 1)]
    tokenizer.add_tokens([AddedToken(text, special=False, normalized=False) for text in values])
    ids = tokenizer.convert_tokens_to_ids(values)
    if not isinstance(ids, list) or len(set(ids)) != len(values):
        raise ValueError("number tokens did not map to distinct ids")
    return [int(i) for i in ids]


def sincos_code(values: Any, width: int) -> Any:
    """Rows of ``width`` numbers coding each value (a 1-D float tensor of grid units): pairs of
    sin / cos at periods spaced geometrically from 4 to 4,000 grid units, unit root-mean-square."""
    import torch

    pairs = width // 2
    periods = torch.logspace(
        math.log10(_SHORTEST_PERIOD), math.log10(_LONGEST_PERIOD), steps=max(pairs, 1), dtype=torch.float64
    )
    angles = values.to(torch.float64)[:, None] * (2 * math.pi / periods)[None, :]
    code = torch.zeros((len(values), width), dtype=torch.float64)
    code[:, 0 : 2 * pairs : 2] = torch.sin(angles)
    code[:, 1 : 2 * pairs : 2] = torch.cos(angles)
    return code * math.sqrt(2.0)  # sin and cos each have mean square 1/2


def init_number_rows(model: Any, ids: list[int]) -> None:
    """Set the input embedding and output (lm_head) rows of the number tokens ``ids`` (value order,
    starting at 0) to the sin-cos code of their values, scaled to the standard deviation of the
    model's other rows, so they neither dominate nor vanish next to the random vocabulary."""
    import torch

    values = torch.arange(len(ids))
    index = torch.tensor(ids)
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            weight = layer.weight
            others = torch.ones(weight.shape[0], dtype=torch.bool)
            others[index] = False
            scale = float(weight[others].std())
            weight[index] = (sincos_code(values, weight.shape[1]) * scale).to(weight.dtype)
