"""Type checks for config fields, with messages naming the value received, the type expected and the fix.

A dataclass does not enforce its annotations: `use_policy_loss="no"` is truthy and silently means True,
`history_length=1.5` fails mid-training, `distill_coef="0.01"` fails at the first comparison with an
unrelated message. `SDARConfig.__post_init__` runs these checks on every field before anything uses them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["FieldKind", "check_field_types"]

#: (kind, None allowed, example value for the message). Kinds: "bool", "int", "number" (int or float), "str".
FieldKind = tuple[str, bool, Any]


def check_field_types(config: object, kinds: Mapping[str, FieldKind]) -> None:
    """Raise `TypeError` for the first field of `config` whose value does not have its declared kind."""
    for name, (kind, optional, example) in kinds.items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if not _has_kind(value, kind):
            raise TypeError(_message(name, value, kind, optional, example))


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    raise ValueError(f"unknown field kind {kind!r}")  # a typo in a kinds table, not user input


def _message(name: str, value: Any, kind: str, optional: bool, example: Any) -> str:
    received = f"{name}={value!r} ({type(value).__name__})"
    or_none = " or None" if optional else ""
    if kind == "bool":
        return (
            f"{received} must be a real bool{or_none}. Pass True or False: any other value is read by its "
            "truthiness (the string 'no' is truthy and would mean True). On the command line, --"
            f"{name} false works."
        )
    if kind == "int":
        return f"{received} must be a whole number (int){or_none}. Pass e.g. {name}={example!r}."
    if kind == "number":
        example = _parsed_number(value, default=example)
        return (
            f"{received} must be a number (int or float){or_none}, not a string or bool. Pass e.g. {name}={example!r}."
        )
    return f"{received} must be a string{or_none}. Pass e.g. {name}={example!r}."


def _parsed_number(value: Any, *, default: Any) -> Any:
    """The number a string such as "0.01" spells (what the user probably meant), else `default`."""
    if not isinstance(value, str):
        return default
    try:
        number = float(value)
    except ValueError:
        return default
    return number if math.isfinite(number) else default
