"""`spr pairs export`: a spool as a Hugging Face ``datasets`` folder in TRL's vision preference format.

The folder is written with ``Dataset.save_to_disk`` and loads with ``datasets.load_from_disk``; its rows
are the spool's pairs in spool order with the columns of :mod:`spr.trainer.dataset`. By default the
image bytes are embedded, so the folder is self-contained (copy it anywhere and `spr train --dataset`
it); ``embed_images=False`` keeps references to the image files instead.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from spr.shared.errors import SprError
from spr.trainer.dataset import dataset_from_records
from spr.trainer.spool import Spool, is_spool

logger = logging.getLogger(__name__)


class ExportError(SprError):
    """The export's input or output folder is not usable."""


def export_spool(spool_dir: Path, out_dir: Path, *, embed_images: bool = True) -> int:
    """Write every pair of the spool at ``spool_dir`` to ``out_dir``; returns the number of rows."""
    if not is_spool(spool_dir):
        raise ExportError(f"{spool_dir} is not a spool folder (no spool.json): pass --spool DIR")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"output folder {out_dir} exists and is not empty: pass a new --out folder")
    spool = Spool(spool_dir, readonly=True)
    records = spool.records()
    if not records:
        raise ExportError(f"spool {spool_dir} holds no pairs: nothing to export")
    dataset = dataset_from_records(records, spool.directory)
    if embed_images:
        from datasets.table import embed_table_storage

        # What push_to_hub does: read every referenced file into the Arrow table.
        dataset = dataset.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    if out_dir.exists():
        out_dir.rmdir()
    staging.rename(out_dir)
    logger.info("exported %d pairs from %s to %s", len(dataset), spool_dir, out_dir)
    return len(dataset)
