"""``spr eval``: REC and region-description evaluation, and the benchmark converters.

Heavy imports (torch, transformers, numpy) wait for the handlers so ``spr --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spr.shared.format_names import GROUNDING_FORMATS as FORMATS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a grounding model (REC accuracy at IoU 0.5-0.9, region descriptions)",
        description="Evaluate a grounding model with the same parsers and coordinate rules as training.",
    )
    commands = parser.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)

    rec = commands.add_parser(
        "rec",
        help="referring expression comprehension: accuracy at IoU 0.5-0.9 and mean IoU, per split",
        description="Ask the model for the box of each expression (greedy), take the first box of its "
        "answer, and report accuracy at IoU >= 0.5 ... 0.9 and mean IoU per split. Data: jsonl lines "
        '{"image", "expression", "box" [x1, y1, x2, y2 pixels], optional "id", "width", "height"} '
        "(see `spr eval convert`).",
    )
    rec.add_argument(
        "--data", type=Path, action="append", required=True, metavar="FILE.jsonl", help="a split (repeatable)"
    )
    _common(rec, "--data")
    prompt = rec.add_mutually_exclusive_group()
    prompt.add_argument(
        "--prompt", default=None, metavar="TEXT", help="one REC template for every format, with {expression}"
    )
    prompt.add_argument(
        "--prompts",
        type=Path,
        default=None,
        metavar="FILE.yaml",
        help="REC templates per format (default: the packaged rec_prompts.yaml)",
    )
    rec.set_defaults(handler=_rec, max_new_tokens=128)

    regions = commands.add_parser(
        "regions",
        help="grounded region descriptions on held-out region tasks: S_loc, recall, precision, accuracy",
        description="Describe each region task once under the generator's canonical prompt (type (a)), "
        "greedy, and report mean S_loc (paper), object recall and precision at IoU 0.5 (one-to-one "
        "matching), accuracy of matched boxes at IoU 0.5 ... 0.9 and the parse-problem rate.",
    )
    regions.add_argument(
        "--tasks",
        type=Path,
        action="append",
        required=True,
        metavar="FILE.jsonl",
        help="RegionTask jsonl as `spr regions --out` writes; a split (repeatable)",
    )
    _common(regions, "--tasks")
    regions.add_argument(
        "--prompts",
        type=Path,
        default=None,
        metavar="FILE.yaml",
        help="the generator's prompt templates; the first of type box is used (default: packaged)",
    )
    regions.set_defaults(handler=_regions, max_new_tokens=512)

    convert = commands.add_parser("convert", help="convert RefCOCO/+/g or Flickr30k Entities to REC jsonl")
    sources = convert.add_subparsers(dest="convert_source", metavar="SOURCE", required=True)
    refcoco = sources.add_parser(
        "refcoco",
        help="RefCOCO / RefCOCO+ / RefCOCOg refs(*).p + instances.json -> <split>.jsonl",
        description="One example per sentence; box = the annotation's COCO [x, y, w, h] as pixels "
        "[x1, y1, x2, y2]; image = the COCO file_name (with --image-prefix).",
    )
    refcoco.add_argument(
        "--refs", type=Path, required=True, metavar="FILE", help="refs(unc).p, refs(umd).p ..."
    )
    refcoco.add_argument("--instances", type=Path, required=True, metavar="FILE", help="instances.json")
    refcoco.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for <split>.jsonl")
    refcoco.add_argument(
        "--image-prefix", default="", metavar="P", help="prepended to image file names, e.g. train2014/"
    )
    refcoco.add_argument("--dataset", default=None, help="dataset name in example ids (default: refs stem)")
    refcoco.set_defaults(handler=_convert_refcoco)

    flickr = sources.add_parser(
        "flickr30k",
        help="Flickr30k Entities Sentences/ + Annotations/ -> <split>.jsonl (one example per phrase)",
        description="One example per grounded phrase; a phrase with several boxes gets their union "
        "(--multi-box first: the first box).",
    )
    flickr.add_argument("--sentences", type=Path, required=True, metavar="DIR", help="Sentences/ folder")
    flickr.add_argument("--annotations", type=Path, required=True, metavar="DIR", help="Annotations/ folder")
    flickr.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for <split>.jsonl")
    flickr.add_argument(
        "--split-list",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="image ids of a split, named by the file's stem (repeatable; e.g. val.txt test.txt); "
        "default: every image into all.jsonl",
    )
    flickr.add_argument("--multi-box", choices=("union", "first"), default="union")
    flickr.add_argument(
        "--image-prefix", default="", metavar="P", help="prepended to <id>.jpg, e.g. flickr30k-images/"
    )
    flickr.set_defaults(handler=_convert_flickr)


def _common(parser: argparse.ArgumentParser, data_flag: str) -> None:
    parser.add_argument(
        "--split",
        action="append",
        default=None,
        metavar="NAME",
        help=f"split name for each {data_flag} in order (default: the file's stem)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder image paths are relative to (default: $SPR_DATA_ROOT, else the first data "
        "file's folder)",
    )
    parser.add_argument(
        "--answers",
        type=Path,
        action="append",
        default=None,
        metavar="FILE.jsonl",
        help=f"score these model answers instead of running a model (one per {data_flag}, in order)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, default=None, metavar="DIR", help="local model folder")
    model.add_argument("--adapter", type=Path, default=None, metavar="DIR", help="LoRA adapter on --model")
    model.add_argument("--format", choices=FORMATS, default=None, help="grounding format (default: model's)")
    model.add_argument(
        "--engine",
        choices=("transformers", "vllm"),
        default="transformers",
        help="transformers: in-process (default); vllm: a vLLM server set by SPR_GENERATOR_VLLM_URL, "
        "SPR_GENERATOR_SERVED_MODEL_NAME, SPR_GENERATOR_CONCURRENCY",
    )
    model.add_argument("--device", default="cpu", help="transformers: torch device (cpu)")
    model.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto")
    model.add_argument(
        "--torch-threads", type=int, default=None, metavar="N", help="transformers: CPU threads"
    )
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    decoding.add_argument("--top-p", type=float, default=1.0)
    decoding.add_argument(
        "--max-new-tokens", type=int, metavar="N", help="answer length limit (rec 128, regions 512)"
    )
    decoding.add_argument("--seed", type=int, default=0)
    decoding.add_argument("--batch-size", type=int, default=16, metavar="N", help="requests per engine call")
    output = parser.add_argument_group("output")
    output.add_argument("--limit", type=int, default=None, metavar="N", help="first N items of each split")
    output.add_argument("--out", type=Path, default=None, metavar="FILE.json", help="results JSON")
    output.add_argument(
        "--predictions", type=Path, default=None, metavar="DIR", help="per-item <split>.jsonl (re-scorable)"
    )


def _job(args: argparse.Namespace, data: list[Path]) -> Any:
    from spr.cli.settings import CliSettings
    from spr.eval.jobs import EvalJob, SplitFiles
    from spr.eval.models import ModelSpec
    from spr.eval.rec import Decoding
    from spr.shared.errors import SprError

    names = args.split or []
    answers = args.answers or []
    if names and len(names) != len(data):
        raise SprError(f"give one --split per data file ({len(data)}), or none; got {len(names)}")
    if answers and len(answers) != len(data):
        raise SprError(f"give one --answers per data file ({len(data)}), or none; got {len(answers)}")
    for flag, value in (("--limit", args.limit), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise SprError(f"{flag} must be >= 1, got {value}")
    if args.max_new_tokens < 1:
        raise SprError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise SprError("--temperature must be >= 0 and --top-p in (0, 1]")
    data_root = args.data_root or CliSettings.from_env().data_root or data[0].parent
    return EvalJob(
        splits=[
            SplitFiles(
                path,
                names[i] if names else None,
                answers[i] if answers else None,
            )
            for i, path in enumerate(data)
        ],
        data_root=data_root,
        model=ModelSpec(
            engine=args.engine,
            model=args.model,
            adapter=args.adapter,
            format=args.format,
            device=args.device,
            dtype=args.dtype,
            torch_threads=args.torch_threads,
        ),
        decoding=Decoding(
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            batch_size=args.batch_size,
        ),
        prompts_file=args.prompts,
        limit=args.limit,
        out=args.out,
        predictions=args.predictions,
    )


def _finish(output: Any, args: argparse.Namespace) -> int:
    print(output.table)
    if args.out is not None:
        print(f"results -> {args.out}")
    if args.predictions is not None:
        print(f"predictions -> {args.predictions}/")
    return 0


def _rec(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spr.eval.jobs import run_rec
    from spr.eval.prompting import RecPrompts

    job = _job(args, args.data)
    if args.prompt is not None:
        job = replace(job, prompts=RecPrompts.single(args.prompt))
    return _finish(run_rec(job), args)


def _regions(args: argparse.Namespace) -> int:
    from spr.eval.jobs import run_regions

    return _finish(run_regions(_job(args, args.tasks)), args)


def _convert_refcoco(args: argparse.Namespace) -> int:
    from spr.eval.convert.refcoco import convert_refcoco

    stats = convert_refcoco(
        args.refs, args.instances, args.out, image_prefix=args.image_prefix, dataset=args.dataset
    )
    return _report_conversion(stats, args.out)


def _convert_flickr(args: argparse.Namespace) -> int:
    from spr.eval.convert.flickr30k import convert_flickr30k

    stats = convert_flickr30k(
        args.sentences,
        args.annotations,
        args.out,
        split_lists=args.split_list,
        multi_box=args.multi_box,
        image_prefix=args.image_prefix,
    )
    return _report_conversion(stats, args.out)


def _report_conversion(stats: Any, out: Path) -> int:
    for split, count in stats.written.items():
        print(f"{split}: {count} examples -> {out / f'{split}.jsonl'}")
    for reason, count in stats.skipped.items():
        print(f"skipped {count}: {reason}")
    if not stats.written:
        print("nothing written: no split had an example")
        return 1
    return 0
