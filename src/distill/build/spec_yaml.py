"""Reading a spec document: a capped, UTF-8, plain-data YAML mapping, or one clean error.

A spec is input like any other (a spec named by ``extends:`` may not be the user's own): its
size, its nesting and its aliases are capped before PyYAML's recursive composer or any code
walking the result can spend the stack, the time or the memory they would declare, and no
error quotes more of the text than a token and a line number.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from distill.bounded import one_line
from distill.build.spec_text import NOT_A_SPEC_HINT, Document
from distill.errors import DistillError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 without its surprises for image specs: ``0755`` stays the text "0755" (modes
    are octal, like chmod's) and ``22:22`` is not a sexagesimal number."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_INT_RE = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))


# What a spec may cost to read. Real specs are a few KiB, nest a few levels and use a few
# anchors; the caps turn a crafted file into one clean error before it costs time or memory.
MAX_YAML_DEPTH = 64
MAX_YAML_ALIASES = 256
_STR_TAG = "tag:yaml.org,2002:str"


class _Bounded(_Loader):
    """The loader with a cap on nesting (PyYAML's composer recurses once per level) and on
    aliases (each is shared, not copied, but code walking the result would copy it)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases", mark
                )
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str, source: str) -> Document:
    """The document's plain data and the lines of its keys, or a one-line error that
    quotes nothing of the text but a token."""
    loader: _Bounded | None = None
    try:
        loader = _Bounded(text)  # checks every character first
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = one_line(str(exc.problem or exc.context or "unreadable"), 200)
        hint = (
            "a spec holds plain YAML: strings, numbers, lists and mappings, no tags"
            if isinstance(exc, yaml.constructor.ConstructorError)
            else "check indentation and quoting near that line"
        )
        raise DistillError(f"{at}: invalid YAML: {problem}", hint=hint) from None
    except yaml.reader.ReaderError as exc:
        raise DistillError(
            f"{source}: not a spec: character #x{int(exc.character):04x} at character "
            f"{exc.position} is not allowed in YAML",
            hint=NOT_A_SPEC_HINT,
        ) from None
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        # A number or date the constructor cannot make (int() of 5,000 digits, month 13).
        raise DistillError(
            f"{source}: invalid YAML: a value it cannot convert ({type(exc).__name__})",
            hint="numbers and dates must be in range; quote a value to keep it a string",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        raise DistillError(f"{source}: a spec must be a YAML mapping (key: value)")
    if not all(isinstance(key, str) for key in data):
        # Only the line: a file that is not a spec must not be quoted back.
        line = next((k.start_mark.line + 1 for k, _ in node.value if k.tag != _STR_TAG), None)
        at = f"{source}:{line}" if line else source
        raise DistillError(f"{at}: a key is not a string", hint=NOT_A_SPEC_HINT)
    lines: dict[str, int] = {}
    items: dict[str, list[int]] = {}
    for key, value in node.value:
        if isinstance(key.value, str):
            lines[key.value] = key.start_mark.line + 1
            if isinstance(value, yaml.SequenceNode):
                items[key.value] = [v.start_mark.line + 1 for v in value.value]
    return Document(data, lines, items)
