"""Loading and validating ``params.yaml``.

Each stage calls :func:`load` once at the top of ``main`` and reads only its own section
plus ``base``. Validation helpers raise :class:`ParamsError` naming the key, the rule and
the fix before any work is done.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

DEFAULT_PATH = Path("params.yaml")


class ParamsError(ValueError):
    """A value in params.yaml breaks a rule; the message names key, value and fix."""


def load(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    """Read the whole params file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root")
    with path.open() as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return params


def require(params: dict[str, Any], dotted: str) -> Any:
    """Return ``params[a][b]...`` for ``dotted='a.b'``, or raise naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"params.yaml: missing key '{dotted}'; add it (see README)")
        node = node[part]
    return node


def choice(value: Any, *, key: str, valid: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``valid``, else raise listing the valid ones."""
    valid = list(valid)
    if value not in valid:
        raise ParamsError(f"params.yaml: {key}={value!r} is not valid; choose one of {valid}")
    return value


def positive(value: Any, *, key: str, allow_zero: bool = False) -> Any:
    """Return a number that is > 0 (or >= 0 with ``allow_zero``), else raise."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ParamsError(f"params.yaml: {key}={value!r} must be a number {rule}")
    return value
