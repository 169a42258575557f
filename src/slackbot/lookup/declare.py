"""Function declarations for the Interactions API, built from typed Python signatures; and calls
checked against them. Pure: a function's annotations and docstring in, a JSON schema out.

A parameter is described by `Annotated[type, "what it is"]`; supported types are str, int, float,
bool, Literal[...] of strings, list[str] and `X | None` (optional). A parameter with a default is
optional. The docstring's first paragraph is the function's description. Keyword-only parameters
are the bot's own (e.g. the call's id), never declared to Gemini nor taken from its arguments.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Annotated, Any, Callable, Literal, get_args, get_origin

_JSON = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema(hint: Any) -> dict:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        schema = _schema(args[0])
        return {**schema, "description": " ".join(str(a) for a in args[1:] if isinstance(a, str))}
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        return _schema(kept[0])
    if origin is Literal:
        return {"type": "string", "enum": [str(a) for a in args]}
    if origin is list:
        return {"type": "array", "items": _schema(args[0] if args else str)}
    if hint in _JSON:
        return {"type": _JSON[hint]}
    raise TypeError(f"unsupported parameter type {hint!r}")


def declaration(fn: Callable) -> dict:
    """`{"type": "function", "name", "description", "parameters"}` for one function (self skipped)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    properties, required = {}, []
    for name, param in _declared(fn).items():
        properties[name] = _schema(hints[name])
        if param.default is inspect.Parameter.empty:
            required.append(name)
    doc = inspect.getdoc(fn) or ""
    parameters: dict = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return {"type": "function", "name": fn.__name__, "description": doc.split("\n\n")[0].replace("\n", " "),
            "parameters": parameters}


def bind(fn: Callable, arguments: dict) -> dict:
    """The keyword arguments a call may pass to `fn`: declared names only, each of its declared type
    (an int for a number is fine); ValueError naming the first problem, in words Gemini can act on."""
    if not isinstance(arguments, dict):
        raise ValueError("arguments must be an object")
    hints = typing.get_type_hints(fn, include_extras=True)
    params = _declared(fn)
    unknown = sorted(set(arguments) - set(params))
    if unknown:
        raise ValueError(f"unknown argument '{unknown[0]}'")
    bound = {}
    for name, param in params.items():
        if name not in arguments or arguments[name] is None:
            if param.default is inspect.Parameter.empty:
                raise ValueError(f"'{name}' is required")
            continue
        bound[name] = _value(name, _schema(hints[name]), arguments[name])
    return bound


def _declared(fn: Callable) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(fn).parameters.items()
            if n != "self" and p.kind is not inspect.Parameter.KEYWORD_ONLY}


def _value(name: str, schema: dict, value: Any) -> Any:
    kind = schema["type"]
    if kind == "string" and isinstance(value, str):
        if "enum" in schema and value not in schema["enum"]:
            raise ValueError(f"'{name}' must be one of {', '.join(schema['enum'])}")
        return value
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value):
        return int(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "array" and isinstance(value, list):
        return [_value(name, schema["items"], v) for v in value]
    raise ValueError(f"'{name}' must be a {kind}")
