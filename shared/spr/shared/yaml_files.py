"""Data files written in YAML (prompt templates and the like): read one, or the default shipped with a
package, and validate it into a pydantic model, with one error message naming the file and each bad
field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from spr.shared.errors import SprError, validation_problems

ModelT = TypeVar("ModelT", bound=BaseModel)


def load_yaml_model(
    model: type[ModelT],
    path: Path | None,
    *,
    package: str,
    resource: str,
    what: str,
    error: type[SprError],
) -> ModelT:
    """``model`` validated from the YAML file ``path``, or from ``package``'s ``resource`` when None.

    Every failure raises ``error`` with a message naming the file and ``what`` it should hold
    (e.g. "prompt templates"): unreadable, not YAML, or invalid fields."""
    if path is None:
        source = f"the packaged {resource}"
        text = resources.files(package).joinpath(resource).read_text("utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise error(f"cannot read {what} {source}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{source} is not valid YAML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"invalid {what} in {source}: {validation_problems(exc)}") from None
