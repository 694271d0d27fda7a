"""YAML loading that refuses what a hostile or broken file could do to us.

``yaml.SafeLoader`` already refuses arbitrary Python tags. On top of it: a size limit, a limit
on aliases and on the size the document would have once aliases are expanded ("billion laughs"),
a depth limit, and duplicate keys refused instead of silently overwritten. Every refusal is a
SpecError naming the problem.

Where PyYAML has libyaml, its C parser reads the text (about eight times faster; an
orchestrator parses every ensemble it is sent); libyaml refuses nesting past 1,000 levels
itself, and the aliases are counted on the composed graph instead of while composing.
"""

from __future__ import annotations

from typing import Any

import yaml

from dms.errors import NOTHING, SpecError

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64


class _Shape:
    """What the limits look at in a composed document, found in one walk of its graph."""

    __slots__ = ("aliases", "depth", "expanded")

    def __init__(self, root: yaml.Node) -> None:
        size: dict[int, int] = {}
        """Nodes below and including each node, once aliases are expanded (capped)."""
        depth: dict[int, int] = {}
        """Levels below and including each node (the same whichever way it is reached)."""
        self.aliases = 0
        """References to a node met before: what the document's aliases point at."""
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        seen: set[int] = set()
        while stack:
            node, ready = stack.pop()
            key = id(node)
            if isinstance(node, yaml.SequenceNode):
                children: list[yaml.Node] = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = []
            if ready:
                size[key] = min(MAX_EXPANDED_NODES + 1, 1 + sum(size[id(c)] for c in children))
                depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
                continue
            if key in seen:
                if key not in size:  # met again below itself: it contains itself
                    raise SpecError(
                        "",
                        NOTHING,
                        "aliases to finished values",
                        detail="the document is recursive: an alias refers to a value it is part "
                        "of, which expands without end",
                    )
                self.aliases += 1
                continue
            seen.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(children))
        self.expanded = size[id(root)]
        self.depth = depth[id(root)]


def _too_many_aliases() -> SpecError:
    return SpecError(
        "",
        NOTHING,
        f"at most {MAX_ALIASES} aliases",
        detail=f"the file uses more than {MAX_ALIASES} YAML aliases",
    )


class _UniqueKeys(yaml.constructor.SafeConstructor):
    """Constructor part shared by both loaders: duplicate keys are refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in keys
            except TypeError:
                raise SpecError(
                    "", key, "a string key", detail="is not a valid mapping key"
                ) from None
            if duplicate:
                line = key_node.start_mark.line + 1
                raise SpecError("", key, "unique keys", detail=f"is a duplicate key (line {line})")
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


class _Loader(_UniqueKeys, yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _too_many_aliases()
        return super().compose_node(parent, index)


_CSafeLoader: Any = getattr(yaml, "CSafeLoader", None)
_FastLoader: Any = (
    type("_FastLoader", (_UniqueKeys, _CSafeLoader), {}) if _CSafeLoader is not None else None
)


def load(text: str | bytes, *, fast: bool = True) -> Any:
    """Parse one YAML document safely. Raises SpecError. ``fast=False``: the pure-Python
    parser even where libyaml is present (tests compare the two)."""
    if len(text) > MAX_BYTES:
        raise SpecError(
            "",
            NOTHING,
            f"at most {MAX_BYTES} bytes",
            detail=f"the file has {len(text)} bytes; at most {MAX_BYTES} are accepted",
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                "", NOTHING, "UTF-8 text", detail=f"the file is not UTF-8 ({exc.reason})"
            ) from None
    loader: Any = None
    try:
        counted = not (fast and _FastLoader is not None)
        loader = _Loader(text) if counted else _FastLoader(text)
        root = loader.get_single_node()
        if root is None:
            return None
        shape = _Shape(root)
        if not counted and shape.aliases > MAX_ALIASES:
            raise _too_many_aliases()
        if shape.expanded > MAX_EXPANDED_NODES:
            raise SpecError(
                "",
                NOTHING,
                f"at most {MAX_EXPANDED_NODES} nodes",
                detail=f"the document expands to more than {MAX_EXPANDED_NODES} "
                "values through aliases",
            )
        if shape.depth > MAX_DEPTH:
            raise SpecError(
                "",
                NOTHING,
                f"at most {MAX_DEPTH} levels",
                detail=f"the document is nested deeper than {MAX_DEPTH} levels",
            )
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            "", NOTHING, "valid YAML", detail=f"not valid YAML{where}: {problem}"
        ) from None
    except RecursionError:
        raise SpecError(
            "", NOTHING, "a shallower document", detail="the document is nested too deeply"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
