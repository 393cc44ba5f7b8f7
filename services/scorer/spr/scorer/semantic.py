"""The semantic score S_sem with CLIP (docs/METHOD.md, step 3).

``S_sem = ½ (cos(CLIP_img(crop), CLIP_txt(T')) + cos(E_local(I, R), CLIP_txt(T')))``:

- crop term: CLIP image features of the region cut out of the original image;
- local term: the vision tower runs once on the *full* image; in its last encoder layer the class token
  attends only to itself and to the patch tokens whose cell centre lies inside the region R (when R is
  smaller than one cell: the cells R intersects). Only the class token's row is recomputed, so the cost
  is one normal forward. The class output then goes through ``post_layernorm`` and
  ``visual_projection``, as CLIP's own pooling does.

Image geometry: both the full image and the crop are resized to the vision tower's square input
*without* center-cropping (the processor's default for CLIP is resize-shortest-edge + center crop, which
would cut off parts of the image and of the region). A cell (r, c) of the g x g patch grid therefore
covers ``x in [c, c+1) * W / g`` and ``y in [r, r+1) * H / g`` of the original image (W x H pixels).

Text: T' (box syntax already removed by the caller) is encoded whole when it fits the text encoder's
position limit; longer text is split into sentences, each encoded (a sentence still too long is
truncated), and the unit-normalised sentence embeddings are averaged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from PIL import Image
from spr.scorer.errors import ModelLoadError
from spr.shared.boxes import BoxT

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RegionEmbedding:
    """The image side of one region, computed once and reused for all of its candidates.

    Both vectors are unit-normalised CLIP image embeddings (projection space).
    """

    crop: Vector
    local: Vector


@dataclass(frozen=True)
class SemanticValues:
    """Cosines (unitless, [-1, 1]) of a text embedding with the region's two image embeddings."""

    crop: float
    local: float

    @property
    def score(self) -> float:
        """S_sem = (crop + local) / 2."""
        return 0.5 * (self.crop + self.local)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("SPR_DEVICE=cuda but no CUDA device is available: use 'auto' or 'cpu'")
    return torch.device(device)


def model_id_of(folder: Path) -> str:
    """A short id of a model folder: its name and a hash of its config (what changes the scores)."""
    config = folder / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:10] if config.is_file() else "noconfig"
    return f"{folder.name}@{digest}"


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after . ! ? ; and at line breaks), empty pieces dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


class SemanticScorer:
    """CLIP embeddings for S_sem. Not thread-safe: call it from one thread (the model thread)."""

    def __init__(self, model: Any, processor: Any, *, device: torch.device, model_id: str) -> None:
        self.model = model
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.device = device
        self.model_id = model_id
        vision = model.config.vision_config
        self.image_size = int(vision.image_size)
        self.grid = self.image_size // int(vision.patch_size)
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < self.max_text_tokens:
            self.max_text_tokens = tok_max
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def load(cls, folder: Path, *, device: str = "auto") -> SemanticScorer:
        """Load ``CLIPModel`` and its processor from a local folder onto ``device``."""
        from transformers import AutoProcessor, CLIPModel

        # transformers' loaders are untyped: hold them as Any rather than silencing each call.
        clip_class: Any = CLIPModel
        processor_class: Any = AutoProcessor

        torch_device = resolve_device(device)
        dtype = torch.float16 if torch_device.type == "cuda" else torch.float32
        try:
            model = clip_class.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
            processor = processor_class.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"SPR_SCORER_SEMANTIC_MODEL={folder}: cannot load a CLIP model and processor from it ({exc})"
            ) from exc
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
            raise ModelLoadError(
                f"SPR_SCORER_SEMANTIC_MODEL={folder}: the processor has no tokenizer and image processor"
            )
        model.to(torch_device).eval()
        logger.info("semantic model %s loaded on %s", folder, torch_device)
        return cls(model, processor, device=torch_device, model_id=model_id_of(folder))

    # -- image side ---------------------------------------------------------------------------------

    def region_cells(self, region: BoxT, image_size: tuple[int, int]) -> npt.NDArray[np.bool_]:
        """Patch cells (row-major, ``grid * grid``) the class token may attend to for ``region``.

        ``region`` is absolute pixels of the original image of ``image_size`` = (W, H). A cell is in
        when its centre lies inside the region; a region too small to contain any centre gets the
        cells it intersects instead (never none, as long as it overlaps the image).
        """
        width, height = image_size
        g = self.grid
        x1, y1, x2, y2 = (
            region[0] / width * g,
            region[1] / height * g,
            region[2] / width * g,
            region[3] / height * g,
        )
        centres = np.arange(g, dtype=np.float64) + 0.5
        cols = (centres >= x1) & (centres <= x2)
        rows = (centres >= y1) & (centres <= y2)
        if not cols.any() or not rows.any():
            starts = np.arange(g, dtype=np.float64)
            cols = (starts + 1 > x1) & (starts < x2)
            rows = (starts + 1 > y1) & (starts < y2)
        return np.asarray(np.outer(rows, cols).reshape(-1), dtype=np.bool_)

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        size = {"height": self.image_size, "width": self.image_size}
        batch = self.image_processor(
            images=list(images), do_center_crop=False, size=size, return_tensors="pt"
        )
        pixels: torch.Tensor = batch["pixel_values"].to(self.device, self.dtype)
        return pixels

    def _pooled(self, pixel_values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Image embeddings whose class token, in the last layer, sees only ``keep`` (B, grid²) patches.

        With every patch kept this equals ``CLIPModel.get_image_features``.
        """
        vision = self.model.vision_model
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        layers = vision.encoder.layers
        for layer in layers[:-1]:
            hidden = layer(hidden, None)
        last = layers[-1]
        attn = last.self_attn
        normed = last.layer_norm1(hidden)
        b, t, c = normed.shape
        heads, head_dim = attn.num_heads, attn.head_dim
        # Only the class token's output is used, so only its query row is computed.
        query = attn.q_proj(normed[:, :1]).view(b, 1, heads, head_dim).transpose(1, 2)
        key = attn.k_proj(normed).view(b, t, heads, head_dim).transpose(1, 2)
        value = attn.v_proj(normed).view(b, t, heads, head_dim).transpose(1, 2)
        allowed = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=keep.device), keep], dim=1)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed[:, None, None, :], scale=attn.scale
        )
        cls = hidden[:, :1] + attn.out_proj(attended.transpose(1, 2).reshape(b, 1, c))
        cls = cls + last.mlp(last.layer_norm2(cls))
        embeds: torch.Tensor = self.model.visual_projection(vision.post_layernorm(cls[:, 0]))
        return embeds

    def embed_regions(self, items: Sequence[tuple[Image.Image, BoxT]]) -> list[RegionEmbedding]:
        """Crop and local embeddings of each (RGB image, region box in its pixels), in one forward."""
        if not items:
            return []
        crops: list[Image.Image] = []
        keeps: list[npt.NDArray[np.bool_]] = []
        for image, region in items:
            width, height = image.size
            left = max(0, min(width - 1, math.floor(region[0])))
            top = max(0, min(height - 1, math.floor(region[1])))
            right = max(left + 1, min(width, math.ceil(region[2])))
            bottom = max(top + 1, min(height, math.ceil(region[3])))
            crops.append(image.crop((left, top, right, bottom)))
            keeps.append(self.region_cells(region, (width, height)))
        n = len(items)
        every = np.ones(self.grid * self.grid, dtype=np.bool_)
        keep = torch.from_numpy(np.stack(keeps + [every] * n)).to(self.device)
        with torch.inference_mode():
            pixels = self._pixels([image for image, _ in items] + crops)
            embeds = F.normalize(self._pooled(pixels, keep).float(), dim=-1).cpu().numpy()
        return [RegionEmbedding(crop=embeds[n + i], local=embeds[i]) for i in range(n)]

    def embed_images(self, items: Sequence[tuple[Image.Image, BoxT | None]]) -> Vector:
        """Unit embeddings of whole RGB images, the class token restricted to a region when one is given.

        ``None`` pools over the full image (CLIP's ordinary image features); used to compare the
        region-restricted pooling with the unrestricted one.
        """
        every = np.ones(self.grid * self.grid, dtype=np.bool_)
        keep = [every if region is None else self.region_cells(region, image.size) for image, region in items]
        with torch.inference_mode():
            pixels = self._pixels([image for image, _ in items])
            mask = torch.from_numpy(np.stack(keep)).to(self.device)
            return np.asarray(F.normalize(self._pooled(pixels, mask).float(), dim=-1).cpu().numpy())

    # -- text side ----------------------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str]) -> Vector:
        """Unit text embeddings, shape (len(texts), D); texts must already have box syntax removed."""
        if not texts:
            return np.zeros((0, int(self.model.config.projection_dim)), dtype=np.float32)
        # One tokenizer pass for every text; only texts over the limit are split and tokenized again.
        encoded = self.tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
        rows: list[list[int]] = []
        owner: list[int] = []
        pieces: list[tuple[int, str]] = []
        for index, ids in enumerate(encoded):
            if len(ids) <= self.max_text_tokens:
                rows.append(list(ids))
                owner.append(index)
            else:
                pieces.extend((index, p) for p in split_sentences(texts[index]) or [texts[index]])
        if pieces:
            split = self.tokenizer(
                [p for _, p in pieces], truncation=True, max_length=self.max_text_tokens, verbose=False
            )["input_ids"]
            rows.extend(list(ids) for ids in split)
            owner.extend(index for index, _ in pieces)
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
        with torch.inference_mode():
            output = self.model.get_text_features(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
            )
            features = output if isinstance(output, torch.Tensor) else output.pooler_output
            features = F.normalize(features.float(), dim=-1)
            if pieces:
                owners = torch.tensor(owner, device=features.device)
                summed = torch.zeros(len(texts), features.shape[1], device=features.device)
                summed.index_add_(0, owners, features)
                features = F.normalize(summed, dim=-1)
            return np.asarray(features.cpu().numpy())

    @staticmethod
    def compare(region: RegionEmbedding, text: Vector) -> SemanticValues:
        """Cosines of one unit text embedding with the region's crop and local embeddings."""
        return SemanticValues(crop=float(np.dot(region.crop, text)), local=float(np.dot(region.local, text)))
