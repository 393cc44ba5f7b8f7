"""Referring expressions for synthetic shapes: "the red circle", "the green triangle left of the red circle".

Every expression has exactly one referent among the image's annotated objects. A bare label is used only
when the label is unique in the image; a relation ("left of", "right of", "above", "below") is used when
exactly one object of the target's label stands in that relation to an anchor whose label is unique.
Relations are strict: "A left of B" means A's box ends (x2) at or before B's box starts (x1), so a
human reading the image agrees without measuring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from spr.shared.schemas import AnnotatedObject

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class Expression:
    """One expression and the index of its referent in the image's object list; ``kind`` is "label"
    (the bare label) or "relation"."""

    text: str
    target: int
    kind: str


def holds(relation: str, subject: AnnotatedObject, anchor: AnnotatedObject) -> bool:
    """True when ``subject`` stands in ``relation`` to ``anchor`` (boxes in pixels, y grows down)."""
    s, a = subject.box, anchor.box
    if relation == "left of":
        return s[2] <= a[0]
    if relation == "right of":
        return s[0] >= a[2]
    if relation == "above":
        return s[3] <= a[1]
    if relation == "below":
        return s[1] >= a[3]
    raise ValueError(f"unknown relation {relation!r}: one of {', '.join(RELATIONS)}")


def all_expressions(objects: Sequence[AnnotatedObject]) -> list[Expression]:
    """Every unambiguous expression for the objects of one image, in a fixed order."""
    counts = Counter(obj.label for obj in objects)
    found: list[Expression] = [
        Expression(f"the {obj.label}", index, "label")
        for index, obj in enumerate(objects)
        if counts[obj.label] == 1
    ]
    anchors = [index for index, obj in enumerate(objects) if counts[obj.label] == 1]
    for index, obj in enumerate(objects):
        same = [j for j, other in enumerate(objects) if other.label == obj.label]
        for anchor in anchors:
            if anchor == index:
                continue
            for relation in RELATIONS:
                matching = [j for j in same if holds(relation, objects[j], objects[anchor])]
                if matching == [index]:
                    text = f"the {obj.label} {relation} the {objects[anchor].label}"
                    found.append(Expression(text, index, "relation"))
    return found


def sample_expressions(
    objects: Sequence[AnnotatedObject], rng: np.random.Generator, *, count: int, relation_share: float = 0.5
) -> list[Expression]:
    """Up to ``count`` distinct expressions, about ``relation_share`` of them relational when the image
    allows; at most one per referent and kind, so one object does not dominate an image's examples."""
    pool = all_expressions(objects)
    by_kind: dict[str, list[Expression]] = {"label": [], "relation": []}
    seen: set[tuple[int, str]] = set()
    for index in rng.permutation(len(pool)):
        expression = pool[int(index)]
        if (expression.target, expression.kind) not in seen:
            seen.add((expression.target, expression.kind))
            by_kind[expression.kind].append(expression)
    want_relations = min(len(by_kind["relation"]), round(count * relation_share))
    chosen = by_kind["relation"][:want_relations]
    chosen += by_kind["label"][: count - len(chosen)]
    chosen += by_kind["relation"][want_relations : want_relations + count - len(chosen)]
    return chosen
