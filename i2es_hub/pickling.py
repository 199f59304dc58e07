"""Cheap pickling for the model records.

Python 3.11 pickles a slotted dataclass through ``dataclasses.fields()`` on every
object, both ways. :func:`by_fields` pickles a dataclass as its constructor
arguments instead. Prepared candidates normally cross to the commit process as
marshalled plain values (:mod:`i2es_hub.transfer`); pickle carries a chunk that
marshal cannot.
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
