"""The flows' values as plain JSON data and back: one converter for every boundary.

Mage stores block outputs as JSON (``persona.orchestration.blocks``) and the CLI prints its
answers as JSON; both go through ``to_plain``, and blocks rebuild step values with
``from_plain`` from the dataclasses' type hints.
"""

from __future__ import annotations

import dataclasses
import math
import types
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """A value as JSON holds it (Mage block outputs, the CLI's answers): NaN becomes None, enums
    their value, dataclasses dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def from_plain(kind: type[T] | Any, data: Any) -> T:
    """The value ``to_plain`` gave, rebuilt from its type hints (None back to NaN)."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        return from_plain(kind, data)
    if dataclasses.is_dataclass(kind):
        hints = get_type_hints(kind)
        fields = [f for f in dataclasses.fields(kind) if f.init and f.name in data]
        return kind(**{f.name: from_plain(hints[f.name], data[f.name]) for f in fields})
    if origin is tuple:
        return tuple(from_plain(args[0], item) for item in data)
    if origin is dict:
        return {key: from_plain(args[1], item) for key, item in data.items()}
    if kind is float:
        return math.nan if data is None else float(data)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(data)
    return data
