"""The optional detector term of S_loc: Grounding DINO boxes for a description's phrases.

The paper adds, to the boxes a description writes, the boxes an open-vocabulary detector finds for the
description's phrases. Those boxes join the prediction set of S_loc only; they never enter the text
(refinement edits the written boxes alone). Off unless ``SPR_SCORER_DETECTOR_MODEL`` names a local
Grounding DINO folder (transformers ``GroundingDinoForObjectDetection`` + its processor).

Phrases are lower-cased and joined into Grounding DINO's caption syntax ("a red cup. a dog."); each
caption token is attributed to the phrase whose characters it covers. A query becomes a box for the
phrase whose tokens it scores highest on, when that score exceeds the text threshold and the query's
best token score exceeds the box threshold (the post-processing of the reference implementation, with
the label kept as a phrase index instead of decoded text). Captions longer than the text encoder's
limit are split over several forward rows of the same image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from spr.scorer.errors import ModelLoadError
from spr.scorer.semantic import model_id_of, resolve_device
from spr.shared.boxes import BoxT, clip_box

logger = logging.getLogger(__name__)


class PhraseDetector:
    """Grounding DINO on phrases. Not thread-safe: call it from one thread (the model thread)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        device: torch.device,
        model_id: str,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        max_boxes_per_phrase: int = 3,
    ) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        self.model_id = model_id
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.max_boxes_per_phrase = max_boxes_per_phrase
        self.max_text_len = int(model.config.max_text_len)

    @classmethod
    def load(
        cls, folder: Path, *, device: str = "auto", box_threshold: float = 0.35, text_threshold: float = 0.25
    ) -> PhraseDetector:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        # transformers' loaders are untyped: hold them as Any rather than silencing each call.
        model_class: Any = GroundingDinoForObjectDetection
        processor_class: Any = AutoProcessor

        torch_device = resolve_device(device)
        try:
            model = model_class.from_pretrained(str(folder), local_files_only=True)
            processor = processor_class.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"SPR_SCORER_DETECTOR_MODEL={folder}: cannot load a Grounding DINO model and processor "
                f"from it ({exc})"
            ) from exc
        model.to(torch_device).eval()
        logger.info("detector model %s loaded on %s", folder, torch_device)
        return cls(
            model,
            processor,
            device=torch_device,
            model_id=model_id_of(folder),
            box_threshold=box_threshold,
            text_threshold=text_threshold,
        )

    def _captions(self, phrases: Sequence[str]) -> list[tuple[str, list[tuple[int, int, str]]]]:
        """Pack phrases into captions that fit the text limit; each with its (start, end, phrase) spans."""
        budget = self.max_text_len - 2  # [CLS] ... [SEP]
        captions: list[tuple[str, list[tuple[int, int, str]]]] = []
        text, used = "", 0
        spans: list[tuple[int, int, str]] = []
        for phrase in phrases:
            cost = len(self.tokenizer(phrase, add_special_tokens=False)["input_ids"]) + 1  # + "."
            if cost > budget:
                continue  # one phrase longer than the whole caption: nothing sensible to ask for
            if used + cost > budget and spans:
                captions.append((text, spans))
                text, spans, used = "", [], 0
            start = len(text)
            text += phrase
            spans.append((start, len(text), phrase))
            text += ". "
            used += cost
        if spans:
            captions.append((text.rstrip(), spans))
        return captions

    def detect(self, items: Sequence[tuple[Image.Image, Sequence[str]]]) -> list[dict[str, list[BoxT]]]:
        """For each (RGB image, phrases): phrase (lower-cased, stripped) -> boxes in image pixels.

        Boxes are absolute pixels of that image, clipped to it, best-scored first, at most
        ``max_boxes_per_phrase`` per phrase. Phrases with no detection are absent from the dict.
        """
        rows: list[tuple[int, str, list[tuple[int, int, str]]]] = []
        for index, (_, phrases) in enumerate(items):
            unique = list(dict.fromkeys(p.strip().lower() for p in phrases if p.strip()))
            rows.extend((index, caption, spans) for caption, spans in self._captions(unique))
        results: list[dict[str, list[BoxT]]] = [{} for _ in items]
        if not rows:
            return results
        images = [items[index][0] for index, _, _ in rows]
        captions = [caption for _, caption, _ in rows]
        inputs = self.processor(images=images, text=captions, padding="longest", return_tensors="pt")
        offsets = self.tokenizer(captions, padding="longest", return_offsets_mapping=True)["offset_mapping"]
        with torch.inference_mode():
            outputs = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        probs = torch.sigmoid(outputs.logits.float()).cpu()  # (rows, queries, max_text_len)
        boxes = outputs.pred_boxes.float().cpu()  # (rows, queries, 4) centre x, y, w, h in [0, 1]
        for row, (index, _, spans) in enumerate(rows):
            width, height = items[index][0].size
            token_phrase = _token_owners(offsets[row], spans, probs.shape[2])
            scored = _assign(probs[row], token_phrase, len(spans), self.box_threshold, self.text_threshold)
            found = results[index]
            for phrase_index, query, _score in scored:
                phrase = spans[phrase_index][2]
                if len(found.setdefault(phrase, [])) >= self.max_boxes_per_phrase:
                    continue
                cx, cy, w, h = boxes[row, query].tolist()
                box = clip_box(
                    (
                        (cx - w / 2) * width,
                        (cy - h / 2) * height,
                        (cx + w / 2) * width,
                        (cy + h / 2) * height,
                    ),
                    width,
                    height,
                )
                if box is not None:
                    found[phrase].append(box)
            for phrase in [p for p, b in found.items() if not b]:
                del found[phrase]
        return results


def _token_owners(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int, str]], length: int
) -> torch.Tensor:
    """For each token position: the index of the phrase span covering it, or -1."""
    owners = torch.full((length,), -1, dtype=torch.long)
    for position, (start, end) in enumerate(offsets[:length]):
        if end <= start:
            continue  # special or padding token
        for index, (span_start, span_end, _) in enumerate(spans):
            if start >= span_start and end <= span_end:
                owners[position] = index
                break
    return owners


def _assign(
    probs: torch.Tensor, owners: torch.Tensor, n_phrases: int, box_threshold: float, text_threshold: float
) -> list[tuple[int, int, float]]:
    """(phrase, query, score) for every query kept, best score first.

    A query's score for a phrase is its best probability over the phrase's tokens; it is kept for its
    best phrase when that score exceeds both thresholds (tokens outside phrases, like the "." between
    them, never make a box).
    """
    if n_phrases == 0:
        return []
    per_phrase = torch.zeros(probs.shape[0], n_phrases)
    for index in range(n_phrases):
        tokens = owners == index
        if tokens.any():
            per_phrase[:, index] = probs[:, tokens].max(dim=1).values
    best_score, best_phrase = per_phrase.max(dim=1)
    keep = (best_score > box_threshold) & (best_score > text_threshold)
    kept = [(int(best_phrase[q]), q, float(best_score[q])) for q in torch.nonzero(keep).flatten().tolist()]
    return sorted(kept, key=lambda item: -item[2])
