"""Checks of an operator's settings that would otherwise end in a library's traceback minutes later.

A malformed Redis URL (``localhost:6379``), an output folder that cannot be written, and a model
folder of the wrong kind (the CLIP given as the policy, or the policy as the CLIP) each become one
:class:`OperatorError` line naming the setting and the fix, raised before anything is loaded. Every
function takes ``setting``: how the operator gave the value (``SPR_REDIS_URL``, ``--output-dir`` ...).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from spr.shared.errors import SprError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

# model_type values (config.json) of folders that are certainly not a vision-language policy.
NOT_A_POLICY = frozenset(
    {"clip", "clip_vision_model", "clip_text_model", "siglip", "siglip2", "grounding-dino", "owlv2", "owlvit"}
)
CLIP_TYPES = frozenset({"clip"})

ModelKind = Literal["policy", "clip"]


class OperatorError(SprError):
    """A setting the operator gave cannot work; the message names the setting and the fix."""


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL, or None when it is one."""
    example = "e.g. redis://localhost:6379/0"
    if not url.startswith(REDIS_SCHEMES):
        return f"must start with redis://, rediss:// or unix:// ({example})"
    if url.startswith("unix://"):
        return None if len(url) > len("unix://") else f"names no socket path ({example})"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (ValueError when not a number)
    except ValueError as exc:
        return f"cannot be parsed ({exc}; {example})"
    if not parts.hostname:
        return f"names no host ({example})"
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        return f"database {database!r} must be a number ({example})"
    return None


def check_redis_url(url: str, setting: str) -> str:
    """``url`` unchanged; OperatorError when it is not a Redis URL."""
    problem = redis_url_problem(url)
    if problem is not None:
        raise OperatorError(f"{setting} {url!r} is not a Redis URL: it {problem}")
    return url


def _unwritable(folder: Path, setting: str, reason: str) -> OperatorError:
    return OperatorError(
        f"{setting}={folder} cannot be written ({reason}): choose a folder this user can write, or give "
        "it write access (the docker images run as uid 1000: `sudo chown 1000:1000 FOLDER` on the host)"
    )


def check_writable_folder(folder: Path, setting: str) -> Path:
    """Create ``folder`` (and its parents) if missing and prove it writable with a temporary file.

    OperatorError naming ``setting`` when it cannot be created or written (a read-only mount, a parent
    that is a file, no permission).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _unwritable(folder, setting, "it is a file, not a folder") from None
    except OSError as exc:
        raise _unwritable(folder, setting, exc.strerror or type(exc).__name__) from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".spr-write-check-"):
            pass
    except OSError as exc:
        raise _unwritable(folder, setting, exc.strerror or type(exc).__name__) from None
    return folder


def check_writable_file(path: Path, setting: str) -> Path:
    """``path``'s folder exists (created if missing) and is writable; ``path`` itself is not a folder."""
    if path.is_dir():
        raise OperatorError(f"{setting}={path} is a folder: give a file path, e.g. {path / 'out.jsonl'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise _unwritable(path, setting, "the file is read-only")
    check_writable_folder(path.parent, setting)
    return path


def model_type_of(folder: Path) -> str | None:
    """``model_type`` from ``folder/config.json``; None when the file is missing or has none."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("model_type") if isinstance(config, dict) else None
    return str(value) if value else None


def check_model_folder(folder: Path, setting: str, kind: ModelKind) -> Path:
    """``folder`` is a local model folder of ``kind``: a vision-language ``policy`` or a ``clip``.

    OperatorError naming ``setting`` when the folder is missing, has no config.json, or holds the
    other kind of model (judged by config.json's ``model_type``).
    """
    if not folder.is_dir():
        raise OperatorError(
            f"{setting}={folder} is not a folder: give the local folder a model was saved to "
            "(save_pretrained; nothing is downloaded)"
        )
    model_type = model_type_of(folder)
    if model_type is None and kind == "policy" and (folder / "config.json").is_file():
        return folder  # an unusual policy config: the loader and the format checks judge it
    if model_type is None:
        what = (
            "config.json names no model_type" if (folder / "config.json").is_file() else "has no config.json"
        )
        raise OperatorError(
            f"{setting}={folder} {what}: give the folder a model was saved to (save_pretrained: "
            "config.json and the weights)"
        )
    if kind == "clip" and model_type not in CLIP_TYPES:
        raise OperatorError(
            f"{setting}={folder} holds a {model_type!r} model, not a CLIP: give a CLIP folder (e.g. "
            "clip-vit-large-patch14) or 'none'; the policy belongs in SPR_GENERATOR_MODEL / "
            "SPR_TRAINER_MODEL"
        )
    if kind == "policy" and model_type in NOT_A_POLICY:
        raise OperatorError(
            f"{setting}={folder} holds a {model_type!r} model, not a vision-language policy: give the "
            "policy's folder (e.g. Qwen2-VL-7B-Instruct); a CLIP belongs in SPR_SCORER_SEMANTIC_MODEL"
        )
    return folder
