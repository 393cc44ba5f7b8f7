"""Preference pairs as TRL's vision preference dataset: ``prompt`` / ``chosen`` / ``rejected`` / ``images``.

Each row is conversational, the way TRL's ``DataCollatorForVisionPreference`` expects it:

* ``prompt``: one user turn, an image placeholder then the pair's canonical prompt (prompt type (a));
* ``chosen`` / ``rejected``: one assistant turn each, the response text in the model's box syntax;
* ``images``: the full image (one), decoded lazily by ``datasets`` from its file;
* ``pair_id``, ``task_id``, ``margin``: provenance; ``tokens``: the length the spool measured (checked
  against ``max_length`` before training). TRL drops the columns it does not use.

Row order is spool order (or the exported file's order), so a training run's data is reproducible; the
trainer's sampler shuffles it with the run's seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from spr.shared.errors import SprError
from spr.shared.schemas import PreferencePair
from spr.trainer.spool import Spool, SpoolRecord, is_spool

if TYPE_CHECKING:
    import datasets

REQUIRED_COLUMNS: Final = ("prompt", "chosen", "rejected", "images")


class DatasetSourceError(SprError):
    """A training dataset folder is missing or not in TRL's prompt/chosen/rejected/images format."""


def prompt_messages(prompt: str) -> list[dict[str, Any]]:
    """The user turn: the image first (as Qwen2-VL prompts place it), then the prompt text."""
    return [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": prompt}]}]


def response_messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def trl_example(pair: PreferencePair, image: Any) -> dict[str, Any]:
    """One TRL example for ``pair`` with ``image`` (a PIL image, or a path for a ``datasets`` row)."""
    return {
        "prompt": prompt_messages(pair.prompt),
        "chosen": response_messages(pair.chosen.text),
        "rejected": response_messages(pair.rejected.text),
        "images": [image],
    }


def features() -> datasets.Features:
    """The column types of a spool-built dataset (images as ``datasets.Image``)."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    messages = List({"role": Value("string"), "content": List(part)})
    return Features(
        {
            "pair_id": Value("string"),
            "task_id": Value("string"),
            "margin": Value("float64"),
            "tokens": Value("int64"),
            "prompt": messages,
            "chosen": messages,
            "rejected": messages,
            "images": List(Image()),
        }
    )


def dataset_from_records(records: list[SpoolRecord], spool_dir: Path) -> datasets.Dataset:
    """A ``datasets.Dataset`` of ``records`` in order; images reference their files (not embedded)."""
    from datasets import Dataset

    rows: dict[str, list[Any]] = {name: [] for name in features()}
    for record in records:
        example = trl_example(record.pair, str(record.image_path(spool_dir)))
        rows["pair_id"].append(record.pair.pair_id)
        rows["task_id"].append(record.pair.task_id)
        rows["margin"].append(record.pair.margin)
        rows["tokens"].append(record.tokens)
        for name in REQUIRED_COLUMNS:
            rows[name].append(example[name])
    return Dataset.from_dict(rows, features=features())


class PairSource:
    """Where training pairs come from: a spool, or a ``datasets`` folder written by ``save_to_disk``.

    ``identity`` names the source in the output folder's round ledger (training another source into
    the same output folder is refused, since pair positions would not mean the same pairs).
    """

    def __init__(self, *, spool: Spool | None = None, dataset_dir: Path | None = None) -> None:
        if (spool is None) == (dataset_dir is None):
            raise ValueError("PairSource takes exactly one of spool or dataset_dir")
        self.spool = spool
        self.dataset_dir = dataset_dir
        self._disk: datasets.Dataset | None = None
        if dataset_dir is not None:
            self._disk = load_exported(dataset_dir)

    @classmethod
    def open_path(cls, path: Path) -> PairSource:
        """A spool folder (opened read-only) or an exported datasets folder."""
        if is_spool(path):
            return cls(spool=Spool(path, readonly=True))
        return cls(dataset_dir=path)

    @property
    def identity(self) -> str:
        if self.spool is not None:
            return f"spool:{self.spool.directory.resolve()}"
        assert self.dataset_dir is not None
        return f"dataset:{self.dataset_dir.resolve()}"

    def __len__(self) -> int:
        if self.spool is not None:
            return len(self.spool)
        assert self._disk is not None
        return len(self._disk)

    def dataset(self, start: int, end: int) -> datasets.Dataset:
        """Rows ``start <= i < end`` in source order."""
        if self.spool is not None:
            return dataset_from_records(self.spool.records(start, end), self.spool.directory)
        assert self._disk is not None
        return self._disk.select(range(start, min(end, len(self._disk))))


def load_exported(path: Path) -> datasets.Dataset:
    """Load a ``save_to_disk`` folder and check it has TRL's vision preference columns."""
    from datasets import Dataset, load_from_disk

    if not path.is_dir():
        raise DatasetSourceError(
            f"dataset folder {path} does not exist: pass a spool or `spr pairs export` folder"
        )
    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetSourceError(
            f"{path} is neither a spool nor a datasets folder (save_to_disk): {exc}"
        ) from exc
    if not isinstance(loaded, Dataset):
        raise DatasetSourceError(f"{path} holds several splits: pass the folder of one split")
    missing = [name for name in REQUIRED_COLUMNS if name not in loaded.column_names]
    if missing:
        raise DatasetSourceError(
            f"dataset {path} lacks column(s) {missing}: expected TRL's prompt/chosen/rejected/images format"
        )
    return loaded
