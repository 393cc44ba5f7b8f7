"""Dataset readers (COCO-format detection, ODVG jsonl) and the synthetic shapes dataset.

Readers yield ``(ImageRef, [AnnotatedObject])`` per image, boxes as absolute pixels ``[x1, y1, x2, y2]``
of the original image. Paths: a dataset names its images relative to an *images root*; an
``ImageRef.path`` is relative to the *data root* that the services resolve images against
(``SPR_DATA_ROOT``). The data root must contain the images root.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from spr.shared.errors import SprError

__all__ = ["DatasetError", "data_root_prefix", "join_image_path"]


class DatasetError(SprError):
    """A dataset file that cannot be read, or bad arguments to a reader or writer."""


def data_root_prefix(images_root: Path, data_root: Path) -> PurePosixPath:
    """Where ``images_root`` lies inside ``data_root``, as a '/'-separated relative path ('.' if equal).

    An ``ImageRef.path`` is this prefix joined with the dataset's own file name. Raises DatasetError
    when the images root is not inside the data root (the services could not find the images).
    """
    images = images_root.resolve()
    root = data_root.resolve()
    try:
        relative = images.relative_to(root)
    except ValueError:
        raise DatasetError(
            f"the images folder {images} is not inside the data root {root}: choose a data root "
            "(--data-root or SPR_DATA_ROOT) that contains it"
        ) from None
    return PurePosixPath(relative.as_posix())


def join_image_path(prefix: PurePosixPath, file_name: str) -> str:
    """``ImageRef.path`` for a dataset file name under the images root ('/'-separated)."""
    return (prefix / file_name).as_posix()
