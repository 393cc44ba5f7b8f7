"""Schema objects made from values that are valid by construction, without pydantic's validation.

The scorer's hot path builds many small wire objects (parsed phrases, S_loc matches, candidate scores)
from values its own code has just produced and checked: validating them again would cost more than
computing them (a model's ``__init__`` is several microseconds; ``model_construct`` is not much less).
:func:`trusted` fills an instance the way validation would have, and :func:`check_trustable` makes
a module fail at import when a schema grows something ``trusted`` does not reproduce.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

# Slot setters of pydantic's BaseModel, bound once: calling them directly skips the attribute-name
# lookup that object.__setattr__ does on every call.
new_object = object.__new__
set_dict = BaseModel.__dict__["__dict__"].__set__
set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def trusted(cls: type[M], fields: dict[str, Any]) -> M:
    """An instance of ``cls`` from already-validated values for ALL its fields, without validation.

    What validation gives for a model without aliases, defaults in use, extras or post-init hooks:
    ``fields`` must list every field, in declaration order (the JSON serializer follows the order of
    the instance's ``__dict__``), each value of exactly the type validation would produce (a float
    for a float field, a tuple for a tuple).
    """
    obj = new_object(cls)
    set_dict(obj, fields)
    set_fields(obj, set(fields))
    set_extra(obj, None)
    set_private(obj, None)
    return obj


def check_trustable(model: type[BaseModel], fields: tuple[str, ...]) -> None:
    """Raise TypeError when :func:`trusted` can no longer build ``model`` with exactly ``fields``.

    Call at import, next to the code that builds ``model`` with those fields in that order.
    """
    if tuple(model.model_fields) != fields:
        raise TypeError(
            f"{model.__name__} now has the fields {tuple(model.model_fields)}, not {fields}: update the "
            "code that builds it with trusted()"
        )
    if model.__pydantic_post_init__ is not None or model.__private_attributes__:
        raise TypeError(f"{model.__name__} has post-init or private attributes: trusted() cannot build it")
