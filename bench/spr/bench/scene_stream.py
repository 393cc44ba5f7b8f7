"""Fresh SFT scenes drawn in worker processes, so a GPU step does not wait for the CPU to draw,
process and tokenize its batch. Imported only by the training loop (it imports torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from spr.bench.sft_data import Encoder, SceneExamples, scene_batches
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


class _SceneStream(IterableDataset[dict[str, Any]]):
    """Endless encoded batches; each worker draws its own scenes from (seed, worker id)."""

    def __init__(self, encoder: Encoder, scenes: SceneExamples, batch_size: int, seed: Sequence[int]) -> None:
        self.encoder = encoder
        self.scenes = scenes
        self.batch_size = batch_size
        self.seed = list(seed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        # One thread per worker: the workers together already fill the machine's cores.
        torch.set_num_threads(1)
        rng = np.random.default_rng([*self.seed, worker])
        return scene_batches(self.encoder, self.scenes, self.batch_size, rng)


def scene_loader(
    encoder: Encoder, scenes: SceneExamples, batch_size: int, seed: Sequence[int], workers: int
) -> Iterator[dict[str, Any]]:
    """Endless batches from ``workers`` processes (>= 1), each drawing scenes from ``seed + [id]``;
    batches arrive in worker order, so a run is reproducible for a given worker count."""
    loader = DataLoader(
        _SceneStream(encoder, scenes, batch_size, seed),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4,
    )
    return iter(loader)
