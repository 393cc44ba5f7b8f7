"""`spr regions`: object annotations -> region tasks, onto the queue (spr:tasks) or into a jsonl file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from spr.shared.queue import Queue
    from spr.shared.schemas import RegionTask


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "regions",
        help="build region tasks from object annotations (to the queue or a jsonl file)",
        description="Build query regions by the paper's rule (a random seed object, merge the nearest "
        "object until more than 4, the union box; objects >= 90 % inside are its ground truth) and "
        "publish them to the spr:tasks stream, or write them as JSON lines with --out.",
    )
    parser.add_argument("--annotations", type=Path, required=True, metavar="FILE", help="dataset file")
    parser.add_argument(
        "--format",
        choices=("coco", "odvg"),
        default="coco",
        help="annotation format (default coco, which also reads Objects365)",
    )
    parser.add_argument(
        "--images-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder the dataset's image file names are relative to (default: the annotations' folder)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder the tasks' image paths are relative to; must contain the images "
        "(default: $SPR_DATA_ROOT, else the images root)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed, >= 0 (0)")
    parser.add_argument("--regions-per-image", type=int, default=1, metavar="K", help="regions per image (1)")
    parser.add_argument(
        "--min-objects", type=int, default=5, metavar="N", help="objects merged per region (5: 'more than 4')"
    )
    parser.add_argument(
        "--max-objects", type=int, default=None, metavar="N", help="drop regions with more GT objects"
    )
    parser.add_argument(
        "--whole-image",
        action="store_true",
        help="one region per image, the whole image, every object its GT (images of a few objects)",
    )
    parser.add_argument(
        "--inside-fraction",
        type=float,
        default=0.9,
        metavar="F",
        help="share of an object's area inside the region for it to count as GT (0.9)",
    )
    parser.add_argument("--max-images", type=int, default=None, metavar="N", help="read at most N images")
    parser.add_argument(
        "--source", default=None, help="source dataset id stored in each task (default: the file's stem)"
    )
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument("--out", type=Path, default=None, metavar="FILE.jsonl", help="write tasks to this file")
    sink.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="publish to spr:tasks on this Redis (default when --out is not given: $SPR_REDIS_URL or "
        "redis://127.0.0.1:6379/0)",
    )
    parser.add_argument(
        "--no-backpressure",
        action="store_true",
        help="publish every task at once instead of waiting while spr:tasks' backlog is over its limit",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spr.cli.settings import CliSettings
    from spr.shared.errors import SprError
    from spr.shared.regions import RegionConfig, build_regions
    from tqdm import tqdm

    if args.max_images is not None and args.max_images < 1:
        raise SprError(f"--max-images must be >= 1, got {args.max_images}")
    config = RegionConfig(
        min_objects=args.min_objects,
        inside_fraction=args.inside_fraction,
        regions_per_image=args.regions_per_image,
        max_objects=args.max_objects,
        whole_image=args.whole_image,
    )
    settings = CliSettings.from_env()
    data_root = args.data_root if args.data_root is not None else settings.data_root
    source = args.source if args.source is not None else args.annotations.stem
    # Reach Redis (or prove the output writable) before reading a large annotations file, not after.
    if args.out is not None:
        from spr.shared.operator_checks import check_writable_file

        check_writable_file(args.out, "--out")
    sink = (
        _FileSink(args.out)
        if args.out is not None
        else _QueueSink(args.redis_url or settings.require_redis_url("spr regions"))
    )
    images = _load(args.format, args.annotations, args.images_root, data_root)

    read = skipped = written = duplicates = 0
    with sink, tqdm(images, unit="img", desc="regions", disable=None) as bar:
        for image, objects in bar:
            if args.max_images is not None and read >= args.max_images:
                break
            read += 1
            if len(objects) < config.min_objects:
                skipped += 1
                continue
            for task in build_regions(image, objects, config=config, seed=args.seed, source=source):
                if sink.write(task, backpressure=not args.no_backpressure):
                    written += 1
                else:
                    duplicates += 1
            bar.set_postfix(regions=written, refresh=False)
    print(
        f"images read: {read}, skipped (< {config.min_objects} objects): {skipped}, "
        f"regions written: {written}, duplicates: {duplicates} -> {sink.target}"
    )
    return 0


def _load(fmt: str, annotations: Path, images_root: Path | None, data_root: Path | None) -> Any:
    if fmt == "odvg":
        from spr.shared.datasets.odvg import load_odvg

        return load_odvg(annotations, images_root, data_root=data_root)
    from spr.shared.datasets.coco import load_coco

    return load_coco(annotations, images_root, data_root=data_root)


class _FileSink:
    """JSON lines, one RegionTask per line; a task id seen before in this run is a duplicate."""

    def __init__(self, path: Path) -> None:
        self.target = str(path)
        self._path = path
        self._seen: set[str] = set()
        self._file: TextIO | None = None

    def __enter__(self) -> _FileSink:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._path.open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, task: RegionTask, *, backpressure: bool) -> bool:
        if task.task_id in self._seen or self._file is None:
            return False
        self._seen.add(task.task_id)
        self._file.write(task.model_dump_json() + "\n")
        return True


class _QueueSink:
    """The spr:tasks stream; the queue itself rejects an id published before (in any run)."""

    def __init__(self, url: str) -> None:
        from spr.shared.queue import Queue
        from spr.shared.queue.errors import redact_url

        self.target = f"{redact_url(url)} (spr:tasks)"
        self._queue: Queue = Queue.from_url(url)
        try:
            self._queue.ping()
        except BaseException:
            self._queue.close()
            raise

    def __enter__(self) -> _QueueSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.close()

    def write(self, task: RegionTask, *, backpressure: bool) -> bool:
        from spr.shared.queue import STREAM_TASKS

        return self._queue.publish(STREAM_TASKS, task.task_id, task, backpressure=backpressure)
