"""Syntax nodes of an .xls file.

Every node carries its source span beside its content; spans (and the raw text of literals)
are excluded from equality, so ``parse(fmt(x)) == parse(x)`` compares meaning, not layout.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Union

from .diagnostics import Span


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Ident:
    text: str
    span: Span | None = _span()


# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Str:
    value: str
    raw: str = field(default="", compare=False, repr=False)
    span: Span | None = _span()


@dataclass(frozen=True)
class Num:
    value: float
    raw: str = field(default="", compare=False, repr=False)
    span: Span | None = _span()

    @property
    def is_int(self) -> bool:
        return float(self.value).is_integer() and "." not in self.raw and "e" not in self.raw.lower()


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span | None = _span()


@dataclass(frozen=True)
class Ref:
    """``name``, ``human.mean`` or ``question[lang]``."""

    parts: tuple[Ident, ...]
    index: Ident | None = None
    span: Span | None = _span()

    @property
    def dotted(self) -> str:
        return ".".join(p.text for p in self.parts)

    @property
    def is_name(self) -> bool:
        return len(self.parts) == 1 and self.index is None


@dataclass(frozen=True)
class KwArg:
    name: Ident
    value: "Expr"
    span: Span | None = _span()


@dataclass(frozen=True)
class Call:
    func: Ident
    args: tuple["Expr | KwArg", ...]
    span: Span | None = _span()

    @property
    def positional(self) -> list["Expr"]:
        return [a for a in self.args if not isinstance(a, KwArg)]

    @property
    def keywords(self) -> list[KwArg]:
        return [a for a in self.args if isinstance(a, KwArg)]


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Entry:
    key: Ident
    value: "Expr"
    quoted: bool = field(default=False, compare=False)
    span: Span | None = _span()


@dataclass(frozen=True)
class MapExpr:
    entries: tuple[Entry, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class BinOp:
    """Set algebra (``+ - &``), arithmetic (``* /``, in metric expressions), comparisons, ``in``/``not in`` and ``and``/``or``."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span | None = _span()


@dataclass(frozen=True)
class Not:
    operand: "Expr"
    span: Span | None = _span()


Expr = Union[Str, Num, Bool, Ref, Call, ListExpr, MapExpr, BinOp, Not]


# ---- declarations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: Ident
    value: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Block:
    settings: tuple[Setting, ...]
    span: Span | None = _span()

    def get(self, key: str) -> Setting | None:
        for s in self.settings:
            if s.key.text == key:
                return s
        return None


@dataclass(frozen=True)
class Decl:
    """``KIND NAME ["TITLE"] [= VALUE] [{ SETTINGS }]``."""

    kind: Ident
    name: Ident
    title: Str | None = None
    value: Expr | None = None
    body: Block | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Import:
    path: Str
    span: Span | None = _span()


@dataclass(frozen=True)
class Comment:
    text: str
    span: Span


@dataclass(frozen=True)
class File:
    items: tuple[Import | Decl, ...]
    path: str = field(default="", compare=False)
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False)

    @property
    def decls(self) -> list[Decl]:
        return [i for i in self.items if isinstance(i, Decl)]

    @property
    def imports(self) -> list[Import]:
        return [i for i in self.items if isinstance(i, Import)]


_BRANCHES = frozenset({Ref, KwArg, Call, ListExpr, Entry, MapExpr, BinOp, Not, Setting, Block, Decl, Import, File})
"""Nodes that can hold other nodes; names, literals and comments are leaves."""


@functools.cache
def _child_fields(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "span")


def children(node) -> list:
    """The nodes directly inside ``node`` that can hold other nodes (names and literals are
    leaves and left out), in source order.  For walks that must not recurse: push these on
    a stack."""
    out = []
    for name in _child_fields(node.__class__):
        value = getattr(node, name)
        for child in value if value.__class__ is tuple else (value,):
            if child.__class__ in _BRANCHES:
                out.append(child)
    return out
