"""Loading and validating ``params.yaml``.

Each stage calls :func:`load` once at the top of ``main``, then :func:`section` once per
section it reads: that validates the section against its typed schema
(:mod:`pipeline.schema`) and returns it as plain data, so a bad value fails before any work
is done, with one error format: the key, the value, the rule (and the valid choices).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

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


_RULES = {
    "greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}", "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}", "int_type": "must be an integer", "int_from_float": "must be an integer",
    "float_type": "must be a number", "bool_type": "must be true or false", "string_type": "must be a string",
    "list_type": "must be a list", "dict_type": "must be a mapping", "literal_error": "is not valid; choose {expected}",
    "too_short": "must hold at least {min_length} item(s)", "too_long": "must hold at most {max_length} item(s)",
}


def explain(err: ValidationError, *, prefix: str) -> ParamsError:
    """One :class:`ParamsError` from a pydantic error: ``params.yaml: <key>=<value> <rule>``
    per problem (joined with ``; ``), the key in dotted form under ``prefix``."""
    parts = []
    for e in err.errors(include_url=False):
        loc = list(e["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"          # the problem is a mapping's key, not its value
        if is_key:
            loc = loc[:-2]
        key = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        if e["type"] == "missing":
            parts.append(f"params.yaml: missing key '{key}'; add it (see params.yaml)")
            continue
        if e["type"] == "value_error":
            rule = e["msg"].removeprefix("Value error, ")
        else:
            ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in e.get("ctx", {}).items()}
            rule = _RULES.get(e["type"], e["msg"]).format(**ctx)
        if is_key:
            hint = f" (quote it: '{e['input']}')" if e["type"] == "string_type" else ""
            parts.append(f"params.yaml: {key} has key {e['input']!r}, which {rule}{hint}")
        elif rule.startswith(("is missing", "has ")):      # a section's own keys: the value would be the whole section
            parts.append(f"params.yaml: {key} {rule}")
        else:
            parts.append(f"params.yaml: {key}={e['input']!r} {rule}")
    return ParamsError("; ".join(parts))


def check(schema: type, value: Any, *, key: str) -> Any:
    """Validate ``value`` (the params at dotted ``key``) against ``schema``, a model of
    :mod:`pipeline.schema`, and return it as plain data; raise :class:`ParamsError`."""
    try:
        return schema.model_validate(value).model_dump()
    except ValidationError as err:
        raise explain(err, prefix=key) from None


def section(params: dict[str, Any], name: str) -> Any:
    """Validate section ``name`` of ``params`` (see :data:`pipeline.schema.SECTIONS`) and return
    it as plain data (dicts and lists); raise :class:`ParamsError` for a missing section or a
    value that breaks its rule."""
    from pipeline.schema import SECTIONS   # here, not at the top: schema imports vocab, which imports this module

    if name == "corpora":
        return corpora(params)
    return check(SECTIONS[name], require(params, name), key=name)


def corpora(params: dict[str, Any]) -> list[str]:
    """The ``corpora`` list: built-in corpora (:data:`pipeline.schema.CORPORA`) or corpora of
    your own (keys of the ``custom`` section), each once."""
    from pipeline.schema import CORPORA

    value = require(params, "corpora")
    known = [*CORPORA]
    if isinstance(value, list) and any(c not in CORPORA for c in value):
        known += list(section(params, "custom") if "custom" in params else {})   # a name of your own: custom
    if (not isinstance(value, list) or not value or len(set(map(str, value))) != len(value)
            or any(c not in known for c in value)):
        raise ParamsError(f"params.yaml: corpora={value!r} must list some of {known}, each once "
                          "(a corpus of your own needs its entry under custom)")
    return list(value)


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
