"""Function calling in the Interactions emulator: declarations, scripted calls, result checks.

Shapes as google-genai 3.6.1 defines them (`_gaos/types/interactions/`):
  * declare: `tools: [{"type": "function", "name", "description", "parameters": <JSON schema>,
    "defer_loading", "short_description"}]` (function.py);
  * call: a `function_call` step `{"id", "name", "arguments": {...}}` (functioncallstep.py), one
    per call (several = parallel calls); streamed as `step.start` with `arguments: {}` then
    `step.delta` `{"type": "arguments_delta", "arguments": <JSON text>}` (argumentsdelta.py); the
    interaction ends with status `requires_action` (interaction.py InteractionStatus);
  * answer: a new create chained by `previous_interaction_id` whose input is a list of steps
    `{"type": "function_result", "call_id", "name"?, "result", "is_error"?}` (functionresultstep.py;
    `result` is a string, a list of content blocks or an object);
  * choose: `generation_config.tool_choice` is "auto" | "any" | "none" | "validated" or
    `{"allowed_tools": {...}}` (toolchoicetype.py, toolchoiceconfig.py).

Pure: request fields and scripts in, checks (400 via ``error``) and call steps out.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Callable

FUNCTION_KEYS = {"name", "description", "parameters", "defer_loading", "short_description"}
TOOL_CHOICES = {"auto", "any", "none", "validated"}
# FunctionDeclaration.name: starts with a letter or underscore; letters, digits, _ . : -; at most 64
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_SCHEMA_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}
# Gemini's own words when the results do not answer the calls one for one
MISMATCH = ("Please ensure that the number of function response parts is equal to the number of "
            "function call parts of the function call turn.")

Error = Callable[[str], Exception]


def validate_function_tool(i: int, tool: dict, names: set[str], error: Error) -> None:
    """One `type: function` declaration: a valid unique name and an object schema for parameters."""
    name = tool.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise error(f"tools[{i}].name: a function name starts with a letter or underscore and has at most "
                    "64 letters, digits, underscores, dots, colons or dashes.")
    if name in names:
        raise error(f"tools[{i}].name: duplicate function name '{name}'.")
    names.add(name)
    if "parameters" in tool and tool["parameters"] is not None:
        params = tool["parameters"]
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise error(f"tools[{i}].parameters: must be a JSON schema of type 'object'.")
        _check_schema(f"tools[{i}].parameters", params, error, 0)


def _check_schema(path: str, schema, error: Error, depth: int) -> None:
    if not isinstance(schema, dict):
        raise error(f"{path}: a schema must be an object.")
    if depth > 32:
        raise error(f"{path}: schema nested too deeply.")
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []
    for kind in kinds:
        if kind not in _SCHEMA_TYPES:
            raise error(f"{path}.type: unknown type {kind!r}.")
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise error(f"{path}.properties: must be an object.")
        for key, sub in props.items():
            _check_schema(f"{path}.properties.{key}", sub, error, depth + 1)
    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise error(f"{path}.required: must be a list of property names.")
        missing = [r for r in required if props is not None and r not in props]
        if missing:
            raise error(f"{path}.required: {missing} not in properties.")
    if "array" in kinds:
        if "items" not in schema:
            raise error(f"{path}.items: missing field (an array needs an items schema).")
        _check_schema(f"{path}.items", schema["items"], error, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise error(f"{path}.{key}: must be a non-empty list of schemas.")
            for n, sub in enumerate(schema[key]):
                _check_schema(f"{path}.{key}[{n}]", sub, error, depth + 1)
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise error(f"{path}.enum: must be a non-empty list.")


def validate_tool_choice(choice, error: Error) -> None:
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise error(f"generation_config.tool_choice: one of {sorted(TOOL_CHOICES)} or an object.")
    elif not isinstance(choice, dict) or set(choice) - {"allowed_tools"}:
        raise error("generation_config.tool_choice: {allowed_tools: {mode, tools}} or a mode name.")


def declared_functions(body: dict) -> set[str]:
    """Names the request offers, minus what tool_choice rules out (a model calls nothing else)."""
    names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"}
    choice = (body.get("generation_config") or {}).get("tool_choice")
    if choice == "none":
        return set()
    if isinstance(choice, dict):
        allowed = (choice.get("allowed_tools") or {})
        if allowed.get("mode") == "none":
            return set()
        if allowed.get("tools"):
            names &= set(allowed["tools"])
    return names


def call_steps(spec) -> list[list[dict]]:
    """A script's ``calls``: one step of calls (a list of dicts) or several (a list of lists)."""
    if not spec:
        return []
    if all(isinstance(c, dict) for c in spec):
        return [list(spec)]
    return [list(step) for step in spec]


def make_calls(step: list[dict], offered: set[str]) -> list[dict]:
    """The function_call steps a model makes: only functions the request offers, each with an id."""
    return [{"type": "function_call", "id": str(c.get("id") or f"call_{uuid.uuid4().hex[:16]}"),
             "name": c["name"], "arguments": dict(c.get("arguments") or {})}
            for c in step if c.get("name") in offered]


def check_results(pending: list[dict], steps: list[dict], error: Error) -> list[dict]:
    """The function_result steps of a follow-up, checked one for one against the calls it answers."""
    results = [s for s in steps if isinstance(s, dict) and s.get("type") == "function_result"]
    if not pending:
        if results:
            raise error("function_result given, but the previous interaction made no function call.")
        return []
    calls = {c["id"]: c for c in pending}
    seen: set[str] = set()
    for n, result in enumerate(results):
        call_id = result.get("call_id")
        if not isinstance(call_id, str) or "result" not in result:
            raise error(f"input[{n}]: a function_result needs 'call_id' and 'result'.")
        if call_id not in calls:
            raise error(f"input[{n}].call_id: '{call_id}' matches no function call of the previous interaction.")
        if call_id in seen:
            raise error(f"input[{n}].call_id: '{call_id}' answered twice.")
        if result.get("name") is not None and result["name"] != calls[call_id]["name"]:
            raise error(f"input[{n}].name: '{result['name']}' is not the function '{calls[call_id]['name']}' "
                        f"that call '{call_id}' called.")
        seen.add(call_id)
    if seen != set(calls):
        raise error(MISMATCH)
    return results


def result_text(result) -> str:
    """The words of a function_result's ``result`` (a string, content blocks or an object)."""
    if isinstance(result, str):
        return result
    if isinstance(result, list):
        return "\n".join(b["text"] for b in result if isinstance(b, dict) and isinstance(b.get("text"), str))
    return json.dumps(result, sort_keys=True)
