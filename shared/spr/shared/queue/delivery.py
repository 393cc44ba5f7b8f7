"""One stream entry handed to a consumer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Delivery:
    """An entry of ``stream`` delivered to ``consumer`` of ``group``; ack or fail it when done.

    ``deliveries`` counts how many times the entry has been handed out (1 on first delivery).
    ``data`` is the payload as published: the model's JSON.
    """

    stream: str
    group: str
    entry_id: str
    item_id: str
    data: str
    deliveries: int
    consumer: str = ""

    def parse(self, model: type[T]) -> T:
        """The payload validated as ``model``; raises pydantic.ValidationError for a poison entry."""
        return model.model_validate_json(self.data)
