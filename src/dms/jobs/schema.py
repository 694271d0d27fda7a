"""The JSON Schema of ensemble files, generated from the model and shipped with the package.

``python -m dms.jobs.schema`` prints it; ``ensemble.schema.json`` beside this module is the
shipped copy, and a test keeps the two identical.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import msgspec
from msgspec import _json_schema

from dms.jobs.spec import Ensemble
from dms.types.quantity import enc_hook, schema_hook

SHIPPED = Path(__file__).with_name("ensemble.schema.json")


def generate() -> dict[str, Any]:
    # msgspec writes field defaults into the schema without an enc_hook, and our quantity
    # defaults (Size(0), Duration(...)) need one; lend it for the duration of the call.
    original = _json_schema.to_builtins  # type: ignore[attr-defined]
    setattr(_json_schema, "to_builtins", functools.partial(original, enc_hook=enc_hook))  # noqa: B010
    try:
        schema: dict[str, Any] = msgspec.json.schema(Ensemble, schema_hook=schema_hook)
    finally:
        setattr(_json_schema, "to_builtins", original)  # noqa: B010
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dms ensemble, version V1"
    return schema


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True) + "\n"


def shipped() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SHIPPED.read_text())
    return loaded


if __name__ == "__main__":
    print(render(), end="")
