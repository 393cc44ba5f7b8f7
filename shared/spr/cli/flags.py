"""Every setting of a stage is a flag too: ``SPR_X_Y`` and ``--x-y`` set the same field.

:func:`attach_settings` adds one flag per field of a pydantic-settings class to a command's parser.
The flags are hidden from ``--help`` (a service has dozens) and listed by ``--help-all`` with their
variable and default. :func:`settings_overrides` turns the flags given into keyword arguments for the
settings class, where they win over the environment (pydantic-settings: init > env > default), so a
flag and its variable always mean the same thing, validated by the same class.

Secret fields (an API key) get no flag: a command line is visible to every user of the machine.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

DEST_PREFIX = "spr_setting__"
_HIDDEN = "_spr_hidden_help"


class _HelpAllAction(argparse.Action):
    """``--help-all``: reveal the hidden settings flags, print the help, exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        for action, text in getattr(parser, _HIDDEN, []):
            action.help = text
        parser.print_help()
        parser.exit()


def add_help_all(parser: argparse.ArgumentParser, what: str = "every setting as a flag") -> None:
    """Add ``--help-all`` (once) to ``parser``."""
    if "--help-all" not in parser._option_string_actions:
        parser.add_argument("--help-all", action=_HelpAllAction, help=f"show the full help: {what}")


def flag_of(field: str) -> str:
    """The flag of settings field ``field``: ``generator_top_p`` -> ``--generator-top-p``."""
    return "--" + field.replace("_", "-")


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _is_json(annotation: Any) -> bool:
    options = [annotation, *typing.get_args(annotation)]
    return any(typing.get_origin(option) in (dict, list) or option in (dict, list) for option in options)


def _default_text(info: Any) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return "computed"
    return "unset" if info.default is None else str(info.default)


def attach_settings(parser: argparse.ArgumentParser, settings: type[BaseSettings]) -> list[str]:
    """Add a hidden flag per field of ``settings`` (skipping fields the command already has a flag for,
    and secrets); returns the flags added. ``--help-all`` shows them."""
    add_help_all(parser)
    prefix = str(settings.model_config.get("env_prefix", ""))
    group = parser.add_argument_group(
        "settings", f"each flag sets the {prefix}* variable of its name (--x-y is {prefix}X_Y); a flag wins"
    )
    hidden: list[tuple[argparse.Action, str]] = getattr(parser, _HIDDEN, [])
    added = []
    for name, info in settings.model_fields.items():
        flag = flag_of(name)
        if flag in parser._option_string_actions or _is_secret(info.annotation):
            continue
        action = group.add_argument(
            flag, dest=DEST_PREFIX + name, default=argparse.SUPPRESS, metavar="VALUE", help=argparse.SUPPRESS
        )
        text = f"{info.description or ''} [{prefix}{name.upper()}; default: {_default_text(info)}]"
        hidden.append((action, text.replace("%", "%%").strip()))
        added.append(flag)
    setattr(parser, _HIDDEN, hidden)
    return added


def settings_overrides(args: argparse.Namespace, settings: type[BaseSettings]) -> dict[str, Any]:
    """The settings given as flags in ``args``, as keyword arguments for ``settings``.

    Values stay strings for the settings class to validate (as it does the environment's), except
    dict and list fields, which are JSON on the command line as in the environment.
    """
    overrides: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if not dest.startswith(DEST_PREFIX):
            continue
        name = dest.removeprefix(DEST_PREFIX)
        if _is_json(settings.model_fields[name].annotation):
            try:
                value = json.loads(value)
            except ValueError as exc:
                from spr.shared.errors import SprError

                raise SprError(f"{flag_of(name)}: not JSON ({exc}); e.g. {flag_of(name)} '{{}}'") from None
        overrides[name] = value
    return overrides
