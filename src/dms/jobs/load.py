"""Reading, normalising, validating and writing ensemble files.

``parse_ensemble(text)`` -> safe YAML -> typed :class:`Ensemble` (msgspec, quantities parsed)
-> normalised (a node per allocation when ``nodes`` is left out) -> cross-checked. Every
problem is a SpecError whose field is the path in the document (``allocations.web.resources.ram``);
several problems come together in an InvalidEnsemble.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect
import yaml

from dms.errors import NOTHING, SpecError
from dms.jobs import validate, yamlsafe
from dms.jobs.errors import InvalidEnsemble
from dms.jobs.spec import Ensemble, NodeSpec
from dms.types.quantity import dec_hook, enc_hook

_SafeDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.DOTALL)
_KEY_AT = re.compile(r"^(.*) - at `key` in `\$(.*)`$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")
_MISSING = re.compile(r"^Object missing required field `([^`]*)`")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_ANY_KEY = "[...]"


def _lookup(doc: Any, path: str) -> Any:
    """The value at a msgspec path (``.a.b[0].c``) in the raw document, or None."""
    current = doc
    for key, index in _SEGMENT.findall(path):
        try:
            current = current[int(index)] if index else current[key]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return current


def _with_only(doc: Any, path: str, key: Any) -> Any:
    """A copy of ``doc`` where the mapping at ``path`` keeps only ``key``."""
    if not path:
        return {key: doc[key]}
    head = _SEGMENT.match(path)
    if head is None:
        return doc
    name, index = head.groups()
    rest = path[head.end() :]
    if index:
        copy = list(doc)
        copy[int(index)] = _with_only(doc[int(index)], rest, key)
        return copy
    return {**doc, name: _with_only(doc[name], rest, key)}


def _split(exc: msgspec.ValidationError) -> tuple[str, str, bool]:
    """(detail, raw path, about-a-key) of a msgspec error."""
    message = str(exc)
    if match := _KEY_AT.match(message):
        return match.group(1), match.group(2), True
    if match := _AT.match(message):
        return match.group(1), match.group(2), False
    return message, "", False


def _resolve(doc: Any, kind: type, detail: str, raw_path: str) -> str:
    """Replace msgspec's ``[...]`` (a mapping key it does not name) with the actual keys."""
    masked_parts = raw_path.split(_ANY_KEY)
    resolved = masked_parts[0]
    for i, tail in enumerate(masked_parts[1:], start=1):
        masked_before = _ANY_KEY.join(masked_parts[:i])
        container = _lookup(doc, resolved)
        found = None
        if isinstance(container, dict):
            for key in container:
                try:
                    msgspec.convert(_with_only(doc, resolved, key), kind, dec_hook=dec_hook)
                except msgspec.ValidationError as exc:
                    again, path, _ = _split(exc)
                    if again == detail and path.startswith(masked_before + _ANY_KEY):
                        found = key
                        break
        resolved += (f".{found}" if found is not None else _ANY_KEY) + tail
    return resolved


def _translate(exc: msgspec.ValidationError, doc: Any) -> SpecError:
    detail, raw_path, about_key = _split(exc)
    raw_path = _resolve(doc, Ensemble, detail, raw_path)
    path = raw_path.lstrip(".")
    if about_key:
        container = _lookup(doc, raw_path)
        bad = (
            [k for k in container if not isinstance(k, str) or not _NAME.match(k)]
            if isinstance(container, dict)
            else []
        )
        return SpecError(
            path,
            bad[0] if bad else None,
            "a name",
            detail="is not a valid name: use lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit (at most 63 characters)",
        )
    if unknown := _UNKNOWN.match(detail):
        name = unknown.group(1)
        return SpecError(
            f"{path}.{name}" if path else name, name, "a known field", detail="is not a known field"
        )
    if missing := _MISSING.match(detail):
        name = missing.group(1)
        return SpecError(
            f"{path}.{name}" if path else name,
            NOTHING,
            "a value",
            detail="is missing; it is required",
        )
    value = _lookup(doc, raw_path)
    if detail.startswith("Invalid enum value"):
        choices = _choices(Ensemble, raw_path)
        return SpecError(path, value, f"one of {choices}", detail=f"is not one of: {choices}")
    if detail.startswith("is "):
        # Our quantity parsers' reason ("is not a size (...)"); msgspec's start in capitals.
        return SpecError(path, value, detail.removeprefix("is not "), detail=detail)
    return SpecError(path, value, detail, detail=_readable(detail))


def _choices(kind: type, raw_path: str) -> str:
    """The accepted values of the enum or literal at ``raw_path`` in type ``kind``."""
    info: Any = msgspec.inspect.type_info(kind)
    for key, index in _SEGMENT.findall(raw_path):
        while isinstance(info, msgspec.inspect.UnionType):
            info = next(
                (t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info
            )
        if isinstance(info, msgspec.inspect.StructType):
            field = next((f for f in info.fields if f.encode_name == key), None)
            if field is None:
                return "the documented values"
            info = field.type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif index and isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
            info = info.item_type
    while isinstance(info, msgspec.inspect.UnionType):
        info = next((t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info)
    if isinstance(info, msgspec.inspect.EnumType):
        return ", ".join(str(m.value) for m in info.cls if m.value != "")
    if isinstance(info, msgspec.inspect.LiteralType):
        return ", ".join(map(str, info.values))
    return "the documented values"


_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,62})$")


def _readable(detail: str) -> str:
    """msgspec's wording, made to read after the value: 'Expected `int`, got `str`' -> ..."""
    expected = re.match(r"^Expected `([^`]*)`(?:, got `[^`]*`)?(.*)$", detail)
    if expected:
        return f"is not {_article(expected.group(1))}{expected.group(2)}"
    if detail.startswith("Invalid enum value"):
        return "is not one of the accepted values"
    return f"is invalid: {detail[0].lower()}{detail[1:]}"


def _article(kind: str) -> str:
    names = {
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "bool": "true or false",
        "object": "a mapping",
        "array": "a list",
        "null": "empty",
    }
    return " or ".join(names.get(k.strip(), k.strip()) for k in kind.split("|"))


def _normalise(ens: Ensemble) -> Ensemble:
    if ens.nodes:
        return ens
    nodes = {name: NodeSpec(allocations=(name,)) for name in ens.allocations}
    return msgspec.structs.replace(ens, nodes=nodes)


def parse_ensemble(text: str | bytes, source: str = "<ensemble>") -> Ensemble:
    """Parse and validate an ensemble. Raises InvalidEnsemble listing every problem found."""
    try:
        doc = yamlsafe.load(text)
    except SpecError as exc:
        raise InvalidEnsemble(source, [exc]) from None
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else type(doc).__name__
        raise InvalidEnsemble(
            source,
            [
                SpecError(
                    "",
                    kind,
                    "a mapping with version: V1",
                    detail="is not an ensemble: expected a mapping "
                    "with version: V1 and allocations",
                )
            ],
        )
    try:
        ens = msgspec.convert(doc, Ensemble, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise InvalidEnsemble(source, [_translate(exc, doc)]) from None
    ens = _normalise(ens)
    problems = validate.check(ens)
    if problems:
        raise InvalidEnsemble(source, problems)
    return ens


def load_ensemble(path: str | Path) -> Ensemble:
    """Read an ensemble file. Raises InvalidEnsemble (also for unreadable files)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(yamlsafe.MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidEnsemble(
            str(file),
            [SpecError("", str(file), "a readable file", detail=f"cannot be read: {exc.strerror}")],
        ) from None
    return parse_ensemble(data, str(file))


def to_document(ens: Ensemble) -> dict[str, Any]:
    """The ensemble as plain data in its written form (quantities as text)."""
    doc: dict[str, Any] = msgspec.to_builtins(ens, enc_hook=enc_hook)
    return doc


def dump_ensemble(ens: Ensemble) -> str:
    """The ensemble as YAML in its normalised form; ``parse_ensemble`` reads it back equal."""
    # allow_unicode=False: non-ASCII is escaped, so line-break-like characters (U+0085,
    # U+2028) survive the round trip instead of being folded by the reader. libyaml's emitter
    # where PyYAML has it: the same text, five times faster (orchestrators store every one).
    return yaml.dump(to_document(ens), Dumper=_SafeDumper, sort_keys=False, allow_unicode=False)
