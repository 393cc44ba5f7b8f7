"""Tokenizers trained on the spot, offline, for the tiny test models.

Two byte-level BPE tokenizers are trained with the ``tokenizers`` library on a small built-in corpus
(the vocabulary of grounded region descriptions: colours, shapes, sizes, positions, numbers 0-1000,
every grounding format's box syntax, punctuation and JSON characters):

* a **Qwen2** tokenizer (Qwen2 normalizer and pre-tokenizer, so digits split one per token exactly as
  in production Qwen2-VL) wrapped as ``transformers.Qwen2Tokenizer`` and given the fourteen Qwen2-VL
  special tokens in Qwen's own order, so ``<|box_start|>`` and friends are single ids;
* a **CLIP** tokenizer (CLIP's lower-casing normalizer, its pre-tokenizer and the ``</w>`` word
  suffix) wrapped as ``transformers.CLIPTokenizer`` with ``<|startoftext|>`` / ``<|endoftext|>``.

Both start from the full 256-symbol byte alphabet, so any text encodes without unknown tokens. The
corpus is fixed (it does not depend on the model seed), and BPE training is deterministic, so the
tokenizer files are byte-identical from build to build.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import CLIPTokenizer, PreTrainedTokenizerBase, Qwen2Tokenizer

# Qwen2-VL's added tokens, in the order (and so the relative ids) of the released checkpoints, where
# they follow the BPE vocabulary at 151643..151656.
QWEN2VL_SPECIAL_TOKENS: Final[tuple[str, ...]] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN2VL_PAD_TOKEN: Final = "<|endoftext|>"
QWEN2VL_EOS_TOKEN: Final = "<|im_end|>"  # what the Instruct checkpoints end a turn with
CLIP_BOS_TOKEN: Final = "<|startoftext|>"
CLIP_EOS_TOKEN: Final = "<|endoftext|>"
CLIP_MAX_LENGTH: Final = 77

QWEN2_BPE_VOCAB_SIZE: Final = 1024  # before the special tokens; training may stop below it
CLIP_BPE_VOCAB_SIZE: Final = 1024

_CLIP_WORD_END: Final = "</w>"

_COLOURS: Final = (
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray",
    "grey", "cyan", "magenta", "violet", "teal", "navy", "olive", "maroon", "gold", "silver", "beige",
    "dark", "light", "bright", "pale",
)  # fmt: skip
_SHAPES: Final = (
    "circle", "square", "triangle", "rectangle", "star", "ellipse", "oval", "hexagon", "pentagon",
    "diamond", "cross", "ring", "heart", "arrow", "line", "dot", "disc", "box", "shape", "object",
    "objects", "shapes", "circles", "squares", "triangles", "rectangles", "stars",
)  # fmt: skip
_SIZES: Final = ("small", "large", "big", "tiny", "huge", "medium", "little", "thin", "wide", "tall")
_POSITIONS: Final = (
    "left of", "right of", "above", "below", "next to", "near", "on top of", "under", "beneath",
    "behind", "in front of", "beside", "between", "inside", "outside", "around", "to the left of",
    "to the right of", "in the top left corner", "in the top right corner", "in the bottom left corner",
    "in the bottom right corner", "in the center", "in the middle", "at the top", "at the bottom",
    "on the left", "on the right", "close to", "far from", "overlapping", "touching",
)  # fmt: skip
_PROMPTS: Final = (
    "Describe the region in detail.",
    "Please describe the objects in the region",
    "Describe the image region and give the box of every object you mention.",
    "The region is marked by the box",
    "This is a crop of the region.",
    "Objects in the region:",
    "Where is the",
    "What is in the highlighted area?",
    "You are a helpful assistant.",
    "There are several objects in this region of the image.",
    "The background is textured, with stripes, noise and a gradient.",
    "system user assistant",
)
_DIGIT_WORDS: Final = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "first",
    "second", "third", "several", "many", "few", "some", "each", "every", "both", "other", "another",
)  # fmt: skip
_PUNCTUATION: Final = ". , ; : ! ? ' \" ( ) [ ] { } < > / \\ | - _ + = * & % $ # @ ~ ` ^ \n \t"


def _box_syntaxes(v: tuple[int, int, int, int], phrase: str) -> list[str]:
    """One grounded phrase written in every grounding format the project parses (docs/METHOD.md)."""
    x1, y1, x2, y2 = v
    # Kosmos-2 names a box by the 32 x 32 grid cells of its top-left and bottom-right corners.
    cells = (
        (y1 * 32 // 1000) * 32 + x1 * 32 // 1000,
        (min(y2, 999) * 32 // 1000) * 32 + min(x2, 999) * 32 // 1000,
    )
    return [
        f"{phrase} [{x1}, {y1}, {x2}, {y2}]",
        f"{phrase} [{x1 / 1000:.3f},{y1 / 1000:.3f},{x2 / 1000:.3f},{y2 / 1000:.3f}]",
        f"{phrase}({x1},{y1}),({x2},{y2})",
        f'{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "{phrase}"}}',
        f'```json\n[\n  {{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "{phrase}"}}\n]\n```',
        f"<ref>{phrase}</ref><box>[[{x1}, {y1}, {x2}, {y2}]]</box>",
        f"<phrase>{phrase}</phrase><object><patch_index_{cells[0]:04d}><patch_index_{cells[1]:04d}></object>",
    ]


def training_corpus() -> list[str]:
    """The fixed built-in corpus both tokenizers are trained on (a few thousand short lines)."""
    lines: list[str] = [
        _PUNCTUATION,
        *_PROMPTS,
        " ".join(_DIGIT_WORDS),
        " ".join(str(n) for n in range(1001)),
    ]
    phrases: list[str] = []
    for colour, shape in itertools.product(_COLOURS, _SHAPES):
        phrases.append(f"a {colour} {shape}")
        phrases.append(f"the {colour} {shape}")
    for size, colour in itertools.product(_SIZES, _COLOURS):
        phrases.append(f"a {size} {colour} shape")
    lines.extend(phrases)
    # Deterministic pseudo-variety without an RNG: stride through the lists with co-prime steps.
    for i in range(2000):
        a = phrases[(i * 7) % len(phrases)]
        b = phrases[(i * 13 + 5) % len(phrases)]
        pos = _POSITIONS[i % len(_POSITIONS)]
        lines.append(f"There is {a} {pos} {b}. {b.capitalize()} is {_SIZES[i % len(_SIZES)]}.")
        box = ((i * 37) % 900, (i * 53) % 900, (i * 37) % 900 + 50 + i % 50, (i * 53) % 900 + 60 + i % 40)
        lines.extend(_box_syntaxes(box, a))
    return lines


def train_qwen2_tokenizer(vocab_size: int = QWEN2_BPE_VOCAB_SIZE) -> Qwen2Tokenizer:
    """A byte-level BPE with Qwen2's pre-tokenizer, wrapped with the Qwen2-VL special tokens.

    ``vocab_size`` bounds the BPE vocabulary (byte alphabet + merges); the fourteen special tokens
    come after it, in Qwen2-VL's order. ``eos_token`` is ``<|im_end|>`` and ``pad_token``
    ``<|endoftext|>``, as in the Qwen2-VL Instruct checkpoints.
    """
    from tokenizers import AddedToken, Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    # Train through the very normalizer and pre-tokenizer the wrapper will use.
    pipeline = Qwen2Tokenizer().backend_tokenizer
    backend = Tokenizer(
        BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    backend.normalizer = pipeline.normalizer
    backend.pre_tokenizer = pipeline.pre_tokenizer
    # Every symbol comes from the (sorted) initial alphabet, so merge ties break the same way in
    # every process and the trained BPE is reproducible.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    backend.train_from_iterator(training_corpus(), trainer=trainer)
    vocab, merges = _vocab_and_merges(backend)
    # Listing the special tokens in the vocabulary pins their ids right after the BPE tokens, in
    # Qwen's order, whatever order the wrapper registers them in.
    for token in QWEN2VL_SPECIAL_TOKENS:
        vocab[token] = len(vocab)

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # tokenizers' BPE takes (a, b) tuples; the hint is stale
        unk_token=None,  # type: ignore[arg-type]  # byte-level BPE covers every byte: no unknown token
        bos_token=None,
        eos_token=QWEN2VL_EOS_TOKEN,
        pad_token=QWEN2VL_PAD_TOKEN,
        model_max_length=32768,
        extra_special_tokens=[
            t for t in QWEN2VL_SPECIAL_TOKENS if t not in (QWEN2VL_PAD_TOKEN, QWEN2VL_EOS_TOKEN)
        ],
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN2VL_SPECIAL_TOKENS])
    return tokenizer


def special_token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The one id of ``token`` (a special token) in ``tokenizer``; TypeError when it has none or several."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"{token!r} did not map to one id ({found!r})")
    return found


def train_clip_tokenizer(vocab_size: int = CLIP_BPE_VOCAB_SIZE) -> CLIPTokenizer:
    """A CLIP-style byte-level BPE (lower-cased, ``</w>`` word suffix), wrapped as ``CLIPTokenizer``.

    The vocabulary is laid out as CLIP's: the 256 byte symbols, the same with ``</w>``, the merges,
    then ``<|startoftext|>`` and ``<|endoftext|>`` (also the pad token). Encodings start and end
    with those two; ``model_max_length`` is 77, CLIP's text context.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    # Words are counted through CLIP's own normalizer and pre-tokenizer. Merges are learned here
    # rather than by tokenizers' BpeTrainer, whose ids for the ``</w>`` symbols (and so its merge
    # tie-breaks) follow a per-process hash order: the files would differ from build to build.
    pipeline = CLIPTokenizer().backend_tokenizer
    text = pipeline.normalizer.normalize_str(" ".join(training_corpus()))
    words = Counter(word for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(text))
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate([*alphabet, *(a + _CLIP_WORD_END for a in alphabet)])}
    merges = _learn_merges(words, max_merges=vocab_size - len(vocab) - 2)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab[CLIP_BOS_TOKEN] = len(vocab)
    vocab[CLIP_EOS_TOKEN] = len(vocab)

    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # tokenizers' BPE takes (a, b) tuples; the hint is stale
        unk_token=CLIP_EOS_TOKEN,
        bos_token=CLIP_BOS_TOKEN,
        eos_token=CLIP_EOS_TOKEN,
        pad_token=CLIP_EOS_TOKEN,
        model_max_length=CLIP_MAX_LENGTH,
    )


def _learn_merges(words: Counter[str], *, max_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE over byte-level words ending in ``</w>``: most frequent pair first, ties by pair.

    Pairs seen fewer than twice are not merged. The corpus has a few hundred distinct words, so a
    full recount per merge is cheap and keeps this obviously deterministic.
    """
    seqs = {w: [*w[:-1], w[-1] + _CLIP_WORD_END] for w in sorted(words) if w}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, symbols in seqs.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += words[word]
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < 2:
            break
        merges.append(best)
        for symbols in seqs.values():
            i = 0
            while i < len(symbols) - 1:
                if (symbols[i], symbols[i + 1]) == best:
                    symbols[i : i + 2] = [best[0] + best[1]]
                i += 1
    return merges


def _vocab_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (in id order) and ordered merges of a trained ``tokenizers`` BPE, via its JSON."""
    state = json.loads(backend.to_str())
    model = state["model"]
    vocab = {str(k): int(v) for k, v in sorted(model["vocab"].items(), key=lambda kv: kv[1])}
    merges: list[tuple[str, str]] = []
    for merge in model["merges"]:
        a, b = merge if isinstance(merge, list) else str(merge).split(" ", 1)
        merges.append((str(a), str(b)))
    return vocab, merges
