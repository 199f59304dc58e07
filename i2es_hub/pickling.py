"""Cheap pickling for the records that cross from prepare workers to the writer.

Python 3.11 pickles a slotted dataclass through ``dataclasses.fields()`` on every
object, both ways; for the five or six records of one prepared document that is
the largest part of handing it from a worker process to the commit stage.
:func:`by_fields` pickles a dataclass as its constructor arguments instead.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, TypeVar

T = TypeVar("T")


def by_fields(cls: type[T]) -> type[T]:
    """Pickle instances of the dataclass ``cls`` as ``cls(*field_values)``.

    Every field must be an ``__init__`` argument, in declaration order.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if not all(f.init for f in fields) or len(fields) < 2:
        raise TypeError(f"{cls.__name__}: by_fields needs two or more init fields")
    values = operator.attrgetter(*(f.name for f in fields))

    def __reduce__(self: Any) -> tuple[type[T], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls
