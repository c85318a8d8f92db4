"""``xlspec fmt``: the canonical layout of a spec, built from its syntax tree.

The layout, in short (see ``tests/fixtures/fmt`` for examples):

* one blank line between declarations; consecutive one-line declarations of the same kind
  (imports, reports, modes, ...) keep the author's choice of none or one;
* blank lines the author put between settings, list items, map entries or comments collapse
  to at most one; none are invented inside a block, none are kept right after an opening
  bracket or right before a closing one;
* 2-space indentation, ``kind name "title" = value {`` ... ``}``, one setting per line; a
  block with no settings prints ``{ }``, a block with one setting that the author wrote on
  one line stays on one line when it fits;
* lists, maps and call arguments stay on one line when they fit in 88 columns and hold no
  comment, else one item per line with a trailing comma;
* single spaces around binary operators, ``key = value`` for settings and keyword
  arguments, ``key: value`` in maps;
* string and number literals keep their exact source text, triple-quoted ones included
  (their lines are not re-indented, so their value cannot change);
* parentheses only where the grammar needs them;
* every comment is kept, in order: a comment on its own line stays on its own line (before
  the next item, or before the closing bracket), a comment after code stays at the end of
  that line, two spaces after it.  A comment inside an expression (after an operator, an
  "=" or a ":") ends the line there, and the expression goes on on the next line, indented.

``fmt(fmt(x))`` is ``fmt(x)`` (fmt being :func:`format_source`), and ``parse(fmt(x)) == parse(x)``.
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass


from . import ast
from .diagnostics import Diagnostics, Span
from .syntax import parse

WIDTH = 88
INDENT = 2

__all__ = ["format_source", "WIDTH"]


# ---- a small Wadler/prettier-style document model ----------------------------------------
#
# A document is a str, a list of documents, or one of the nodes below.  Groups print flat
# when they fit (and hold nothing that forces a line break), else broken.


@dataclass(eq=False)
class Group:
    contents: object
    broken: bool = False


@dataclass(eq=False)
class Indent:
    contents: object


@dataclass(eq=False)
class _Line:
    kind: str  # "line" (space when flat), "soft" (nothing when flat), "hard" (always breaks)


@dataclass(eq=False)
class IfBreak:
    broken: object
    flat: object = ""


@dataclass(eq=False)
class LineSuffix:
    """Text put at the end of the current line, just before the next line break."""

    text: str


@dataclass(eq=False)
class _Marker:
    name: str


LINE = _Line("line")
SOFTLINE = _Line("soft")
HARDLINE = _Line("hard")
BREAK_PARENT = _Marker("break-parent")  # forces the enclosing groups to break
BLANK = _Marker("blank")  # a blank line before the next line's text (broken groups only)

_FLAT, _BREAK = 0, 1


def _propagate(doc) -> bool:
    """Mark every group that holds a forced break as broken; True if ``doc`` holds one."""
    stack = [(doc, False)]
    # Iterative post-order so deep documents do not recurse.
    result: dict[int, bool] = {}
    while stack:
        d, done = stack.pop()
        if isinstance(d, str):
            result[id(d)] = "\n" in d
            continue
        if isinstance(d, list):
            kids = d
        elif isinstance(d, (Group, Indent)):
            kids = [d.contents]
        elif isinstance(d, IfBreak):
            kids = [d.broken, d.flat]
        else:
            continue
        if not done:
            stack.append((d, True))
            stack.extend((k, False) for k in kids)
            continue
        forced = any(_forces(k, result) for k in kids)
        if isinstance(d, Group):
            d.broken = d.broken or forced
            forced = d.broken
        result[id(d)] = forced
    return _forces(doc, result)


def _forces(d, result) -> bool:
    if isinstance(d, str):
        return "\n" in d
    if d is HARDLINE or d is BREAK_PARENT:
        return True
    return result.get(id(d), False)


def _fits(next_cmd, rest, width: int) -> bool:
    cmds = [next_cmd]
    rest_i = len(rest)
    while width >= 0:
        if not cmds:
            if rest_i == 0:
                return True
            rest_i -= 1
            cmds.append(rest[rest_i])
            continue
        ind, mode, d = cmds.pop()
        if isinstance(d, str):
            if "\n" in d:
                return width - len(d.split("\n", 1)[0]) >= 0
            width -= len(d)
        elif isinstance(d, list):
            cmds.extend((ind, mode, x) for x in reversed(d))
        elif isinstance(d, Indent):
            cmds.append((ind + INDENT, mode, d.contents))
        elif isinstance(d, Group):
            cmds.append((ind, _BREAK if d.broken else mode, d.contents))
        elif isinstance(d, _Line):
            if mode == _BREAK or d.kind == "hard":
                return True
            width -= 1 if d.kind == "line" else 0
        elif isinstance(d, IfBreak):
            cmds.append((ind, mode, d.broken if mode == _BREAK else d.flat))
    return False


class _Printer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.buf = ""
        self.fresh = True  # nothing but (unwritten) indentation on the current line
        self.indent = 0
        self.suffix: list[str] = []
        self.blank = False

    def column(self) -> int:
        return self.indent if self.fresh else len(self.buf)

    def write(self, text: str) -> None:
        if not text:
            return
        if self.fresh:
            if text.strip(" ") == "":
                return  # no separator spaces at the start of a line
            if self.blank and self.lines and self.lines[-1] != "":
                self.lines.append("")
            self.blank = False
            self.buf = " " * self.indent
            self.fresh = False
        if "\n" in text:  # a triple-quoted string: its lines go out verbatim
            first, *middle, last = text.split("\n")
            self.lines.append(self.buf + first)
            self.lines.extend(middle)
            self.buf = last
        else:
            self.buf += text

    def newline(self, indent: int) -> None:
        if self.suffix:
            if self.fresh:
                self.buf = " " * self.indent
                self.fresh = False
            self.buf += "".join(self.suffix)
            self.suffix = []
        if not self.fresh:
            self.lines.append(self.buf.rstrip(" "))
            self.buf = ""
            self.fresh = True
        self.indent = indent

    def print(self, doc) -> str:
        _propagate(doc)
        stack = [(0, _BREAK, doc)]
        while stack:
            ind, mode, d = stack.pop()
            if isinstance(d, str):
                self.write(d)
            elif isinstance(d, list):
                stack.extend((ind, mode, x) for x in reversed(d))
            elif isinstance(d, Indent):
                stack.append((ind + INDENT, mode, d.contents))
            elif isinstance(d, Group):
                if mode == _FLAT:
                    stack.append((ind, _FLAT, d.contents))
                elif d.broken:
                    stack.append((ind, _BREAK, d.contents))
                else:
                    flat = (ind, _FLAT, d.contents)
                    stack.append(flat if _fits(flat, stack, WIDTH - self.column()) else (ind, _BREAK, d.contents))
            elif isinstance(d, _Line):
                if mode == _BREAK or d.kind == "hard":
                    self.newline(ind)
                else:
                    self.write(" " if d.kind == "line" else "")
            elif isinstance(d, IfBreak):
                stack.append((ind, mode, d.broken if mode == _BREAK else d.flat))
            elif isinstance(d, LineSuffix):
                self.suffix.append(d.text)
            elif d is BLANK:
                if mode == _BREAK and self.fresh:
                    self.blank = True
        self.newline(0)
        return "\n".join(self.lines) + "\n" if self.lines else ""


def render(doc) -> str:
    return _Printer().print(doc)


# ---- syntax tree -> document -------------------------------------------------------------

_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4, "not in": 4, "+": 5, "-": 5, "&": 5, "*": 6, "/": 6}
# The least precedence each operand of an operator may have without parentheses.
_OPERANDS = {1: (1, 2), 2: (2, 3), 4: (5, 5), 5: (5, 6), 6: (6, 7)}


def _prec(e) -> int:
    if isinstance(e, ast.BinOp):
        return _PREC[e.op]
    if isinstance(e, ast.Not):
        return 3
    return 7


def _children(n) -> list:
    if isinstance(n, ast.File):
        return list(n.items)
    if isinstance(n, ast.Import):
        return [n.path]
    if isinstance(n, ast.Decl):
        return [x for x in (n.kind, n.name, n.title, n.value, n.body) if x is not None]
    if isinstance(n, ast.Block):
        return list(n.settings)
    if isinstance(n, ast.Setting):
        return [n.key, n.value]
    if isinstance(n, ast.Ref):
        return list(n.parts) + ([n.index] if n.index is not None else [])
    if isinstance(n, ast.Call):
        return [n.func, *n.args]
    if isinstance(n, ast.KwArg):
        return [n.name, n.value]
    if isinstance(n, ast.ListExpr):
        return list(n.items)
    if isinstance(n, ast.MapExpr):
        return list(n.entries)
    if isinstance(n, ast.Entry):
        return [n.key, n.value]
    if isinstance(n, ast.BinOp):
        return [n.left, n.right]
    if isinstance(n, ast.Not):
        return [n.operand]
    return []


def _slots(n) -> list:
    """The children that are items of a sequence (one per line when it breaks)."""
    if isinstance(n, ast.File):
        return list(n.items)
    if isinstance(n, ast.Block):
        return list(n.settings)
    if isinstance(n, ast.ListExpr):
        return list(n.items)
    if isinstance(n, ast.MapExpr):
        return list(n.entries)
    if isinstance(n, ast.Call):
        return list(n.args)
    return []


_CONTAINERS = (ast.File, ast.Block, ast.ListExpr, ast.MapExpr, ast.Call)


def _start(n) -> tuple[int, int]:
    return (n.span.line, n.span.col)


def _end(n) -> tuple[int, int]:
    return (n.span.end_line, n.span.end_col)


@dataclass
class _Info:
    node: object
    parent: object
    depth: int


class _Formatter:
    def __init__(self, text: str, file: ast.File):
        self.text = text
        self.lines = text.split("\n")
        self.line_starts = [0]
        for i, line in enumerate(self.lines[:-1]):
            self.line_starts.append(self.line_starts[-1] + len(line) + 1)
        self.file = file
        self.info: dict[int, _Info] = {}
        self.slot_ids: set[int] = set()
        self.leading: dict[int, list[ast.Comment]] = {}
        self.trailing: dict[int, ast.Comment] = {}
        self.opener: dict[int, ast.Comment | None] = {}  # None: taken, no comment
        self.closing: dict[int, list[ast.Comment]] = {}
        self.opener_end: dict[int, tuple[int, int]] = {}
        self.closed: set[int] = set()
        self._index()
        self._attach()

    # -- source helpers --

    def _offset(self, pos: tuple[int, int]) -> int:
        return self.line_starts[pos[0] - 1] + pos[1] - 1

    def _pos(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, offset)
        return (line, offset - self.line_starts[line - 1] + 1)

    def _source(self, span: Span) -> str:
        return self.text[self._offset((span.line, span.col)) : self._offset((span.end_line, span.end_col))]

    def _has_blank(self, after_line: int, before_line: int) -> bool:
        """A whitespace-only line strictly between two (1-based) lines."""
        return any(self.lines[k].strip() == "" for k in range(after_line, before_line - 1))

    def _own_line(self, c: ast.Comment) -> bool:
        return self.lines[c.span.line - 1][: c.span.col - 1].strip() == ""

    def _find_after(self, pos: tuple[int, int], ch: str) -> tuple[int, int] | None:
        i = self._offset(pos)
        while i < len(self.text):
            c = self.text[i]
            if c == ch:
                return self._pos(i)
            if c == "#":
                j = self.text.find("\n", i)
                i = len(self.text) if j < 0 else j
            elif c in " \t\r\n\f":
                i += 1
            else:
                return None
        return None

    # -- comment attachment --

    def _index(self) -> None:
        stack = [(self.file, None, 0)]
        while stack:
            n, parent, depth = stack.pop()
            self.info[id(n)] = _Info(n, parent, depth)
            for s in _slots(n):
                self.slot_ids.add(id(s))
            for k in _children(n):
                stack.append((k, n, depth + 1))
        anchors = []
        for inf in self.info.values():
            n = inf.node
            if isinstance(n, ast.File) or n.span is None:
                continue
            anchors.append(((*_end(n), -inf.depth), ("node", n)))
            opener = None
            if isinstance(n, (ast.Block, ast.ListExpr, ast.MapExpr)):
                opener = (n.span.line, n.span.col + 1)
            elif isinstance(n, ast.Call) and n.func.span is not None:
                paren = self._find_after(_end(n.func), "(")
                if paren is not None:
                    opener = (paren[0], paren[1] + 1)
            if opener is not None:
                self.opener_end[id(n)] = opener
                anchors.append(((*opener, 1), ("opener", n)))
        anchors.sort(key=lambda a: a[0])
        self.anchor_keys = [a[0] for a in anchors]
        self.anchors = [a[1] for a in anchors]

    def _attach(self) -> None:
        previous = (0, 0)  # where the previous comment is
        for c in self.file.comments:
            p = (c.span.line, c.span.col)
            if not self._own_line(c) and self._attach_trailing(c, p, previous):
                previous = p
                continue
            self._attach_own_line(c, p)
            previous = p

    def _attach_trailing(self, c: ast.Comment, p, previous) -> bool:
        i = bisect.bisect_right(self.anchor_keys, (*p, float("inf"))) - 1
        if i < 0 or self.anchor_keys[i][:2] <= previous:
            return False  # no code before it, or only keywords and another comment
        kind, n = self.anchors[i]
        if kind == "node":
            chain = self._line_end(n)
            if any(id(x) in self.closed for x in chain):
                return False
            n = chain[-1]
        table = self.opener if kind == "opener" else self.trailing
        if id(n) in table:  # a second comment at the same place: keep it on its own line
            return False
        table[id(n)] = c
        return True

    def _line_end(self, n):
        """The outermost node whose printed text ends where ``n``'s does: a comment after
        ``n`` is a comment after it (parentheses the layout drops may have stood between).
        Returns the chain from ``n`` up to that node."""
        chain = [n]
        while id(n) not in self.slot_ids:
            parent = self.info[id(n)].parent
            if parent is None or isinstance(parent, ast.File) or _children(parent)[-1] is not n:
                break
            if isinstance(parent, ast.BinOp) and _prec(n) < _OPERANDS[_PREC[parent.op]][1]:
                break  # the closing parenthesis is printed after n
            if isinstance(parent, ast.Not) and _prec(n) < 3:
                break
            if not isinstance(parent, (ast.Decl, ast.Setting, ast.KwArg, ast.Entry, ast.BinOp, ast.Not, ast.Import)):
                break  # a closing bracket is printed after n
            n = parent
            chain.append(n)
        return chain

    def _line_start(self, n):
        """The outermost node whose printed text starts where ``n``'s does (leading comments
        go before it: the same place whether or not the author wrote parentheses)."""
        while id(n) not in self.slot_ids:
            parent = self.info[id(n)].parent
            if parent is None or isinstance(parent, ast.File) or _children(parent)[0] is not n:
                break
            if isinstance(parent, ast.BinOp) and _prec(n) < _OPERANDS[_PREC[parent.op]][0]:
                break  # the opening parenthesis is printed before n
            if not isinstance(parent, (ast.Decl, ast.Setting, ast.KwArg, ast.Entry, ast.BinOp, ast.Ref, ast.Call)):
                break  # something is printed before n: "import", "not", a bracket
            n = parent
        return n

    def _attach_own_line(self, c: ast.Comment, p) -> None:
        # The innermost node around the comment ...
        n = self.file
        while True:
            for k in _children(n):
                if k.span is not None and _start(k) < p < _end(k):
                    n = k
                    break
            else:
                break
        # ... then the first node after it, going outwards; or a closing bracket.  The nodes
        # left behind end after the comment but print before it: a comment after them (a
        # closing parenthesis between) goes on its own line too, to keep the order.
        while True:
            if p < self.opener_end.get(id(n), p):
                # Between a function's name and its "(": a comment after the "(" comes later.
                self.opener.setdefault(id(n), None)
            for k in _children(n):
                if k.span is not None and _start(k) > p:
                    self.leading.setdefault(id(self._line_start(k)), []).append(c)
                    return
            if isinstance(n, _CONTAINERS):
                self.closing.setdefault(id(n), []).append(c)
                return
            self.closed.add(id(n))
            n = self.info[id(n)].parent

    # -- documents --

    @staticmethod
    def _ctext(c: ast.Comment) -> str:
        return c.text.rstrip(" \t\r\f\v")

    def doc(self, n, core=None, trail: bool = True):
        """``n`` with its comments, where ``n`` is not an item of a sequence.  With ``trail``
        false the caller places the comment after ``n`` (see :meth:`_trail`)."""
        d = self.core(n) if core is None else core
        lead = self.leading.get(id(n))
        if lead:
            inner: list = []
            for c in lead:
                inner += [HARDLINE, self._ctext(c)]
            d = Indent([*inner, HARDLINE, d])
        return [d, *self._trail(n)] if trail else d

    def _trail(self, n) -> list:
        """The comment after ``n`` (not an item of a sequence), ending its line.  The callers
        for an operand, a key or a name put it after the operator, "=" or ":" that follows,
        wherever the author wrote it, so that the line ends with that operator."""
        tr = self.trailing.get(id(n))
        if tr is None:
            return []
        return [LineSuffix("  " + self._ctext(tr)), BREAK_PARENT, Indent(HARDLINE)]

    def item(self, n):
        """An item of a sequence, with its trailing comment (leading ones are the caller's)."""
        d = self.core(n)
        tr = self.trailing.get(id(n))
        if tr is not None:
            d = [d, LineSuffix("  " + self._ctext(tr)), BREAK_PARENT]
        return d

    def _opener(self, n) -> list:
        c = self.opener.get(id(n))  # None: no comment there
        return [LineSuffix("  " + self._ctext(c)), BREAK_PARENT] if c is not None else []

    def _operand(self, e, least: int, trail: bool = True):
        d = self.doc(e, trail=trail)
        return ["(", d, ")"] if _prec(e) < least else d

    def core(self, n):
        if isinstance(n, ast.Ident):
            return n.text
        if isinstance(n, ast.Str):
            return n.raw or _quote(n.value)
        if isinstance(n, ast.Num):
            return n.raw or repr(n.value)
        if isinstance(n, ast.Bool):
            return "true" if n.value else "false"
        if isinstance(n, ast.Ref):
            out: list = []
            for i, part in enumerate(n.parts):
                if i:
                    out.append(".")
                out.append(self.doc(part))
            if n.index is not None:
                out += ["[", self.doc(n.index), "]"]
            return out
        if isinstance(n, ast.Call):
            return [self.doc(n.func), self._bracketed(n, "(", ")", n.args)]
        if isinstance(n, ast.KwArg):
            return [self.doc(n.name, trail=False), " ", "=", *self._trail(n.name), " ", self.doc(n.value)]
        if isinstance(n, ast.ListExpr):
            return self._bracketed(n, "[", "]", n.items)
        if isinstance(n, ast.MapExpr):
            return self._bracketed(n, "{", "}", n.entries)
        if isinstance(n, ast.Entry):
            key = self._source(n.key.span) if n.quoted and n.key.span is not None else (_quote(n.key.text) if n.quoted else n.key.text)
            return [self.doc(n.key, key, trail=False), ":", *self._trail(n.key), " ", self.doc(n.value)]
        if isinstance(n, ast.BinOp):
            left, right = _OPERANDS[_PREC[n.op]]
            return [self._operand(n.left, left, trail=False), " ", n.op, *self._trail(n.left), " ", self._operand(n.right, right)]
        if isinstance(n, ast.Not):
            return ["not", " ", self._operand(n.operand, 3)]
        if isinstance(n, ast.Setting):
            return [self.doc(n.key, trail=False), " ", "=", *self._trail(n.key), " ", self.doc(n.value)]
        if isinstance(n, ast.Block):
            return self._block(n)
        if isinstance(n, ast.Decl):
            before_eq = (n.title or n.name) if n.value is not None else None
            out = [self.doc(n.kind), " ", self.doc(n.name, trail=n.name is not before_eq)]
            if n.title is not None:
                out += [" ", self.doc(n.title, trail=n.title is not before_eq)]
            if n.value is not None:
                out += [" ", "=", *self._trail(before_eq), " ", self.doc(n.value)]
            if n.body is not None:
                out += [" ", self.doc(n.body)]
            return out
        if isinstance(n, ast.Import):
            return ["import", " ", self.doc(n.path)]
        raise TypeError(f"cannot format {type(n).__name__}")  # pragma: no cover

    def _sequence(self, container, nodes, sep, comma: bool, top: bool = False, items=None, multiline=None) -> list:
        out: list = []
        prev: int | None = None  # the source line the previous element ended on

        def blank(line: int) -> bool:
            return prev is not None and self._has_blank(prev, line)

        if items is None:
            items = [self.item(n) for n in nodes]
        for i, n in enumerate(nodes):
            if i:
                out += sep
            forced = top and i > 0 and (multiline[i - 1] or multiline[i] or _kind(nodes[i - 1]) != _kind(n))
            first = True
            for c in self.leading.get(id(n), []):
                if (first and forced) or blank(c.span.line):
                    out.append(BLANK)
                out += [self._ctext(c), HARDLINE]
                prev, first = c.span.line, False
            if (first and forced) or blank(n.span.line):
                out.append(BLANK)
            out.append(items[i])
            tr = self.trailing.get(id(n))
            prev = max(n.span.end_line, tr.span.line if tr is not None else 0)
        if comma and nodes:
            out.append(IfBreak(","))
        for c in self.closing.get(id(container), []):
            if out:
                out.append(HARDLINE)
            if blank(c.span.line):
                out.append(BLANK)
            out += [self._ctext(c), BREAK_PARENT]
            prev = c.span.line
        return out

    def _bracketed(self, n, open_: str, close: str, nodes):
        inner = self._sequence(n, nodes, [",", LINE], comma=True)
        if not inner and self.opener.get(id(n)) is None:
            return open_ + close
        return Group([open_, *self._opener(n), Indent([SOFTLINE, *inner]), SOFTLINE, close])

    def _block(self, b: ast.Block):
        inner = self._sequence(b, b.settings, [HARDLINE], comma=False)
        if not inner and self.opener.get(id(b)) is None:
            return "{ }"
        one_line = b.span is not None and b.span.line == b.span.end_line
        return Group(["{", *self._opener(b), Indent([LINE, *inner]), LINE, "}"], broken=len(b.settings) > 1 or not one_line)

    def format(self) -> str:
        items = list(self.file.items)
        docs = [self.item(n) for n in items]
        multiline = ["\n" in render(d).rstrip("\n") for d in docs]
        return render(self._sequence(self.file, items, [HARDLINE], comma=False, top=True, items=docs, multiline=multiline))


def _kind(item) -> str:
    return item.kind.text if isinstance(item, ast.Decl) else "import"


def _quote(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace("\0", "\\0")
    return f'"{out}"'


def format_source(text: str, path: str = "<string>", diags: Diagnostics | None = None) -> str | None:
    """The canonical layout of ``text``; None when it has syntax errors (added to ``diags``)."""
    diags = diags if diags is not None else Diagnostics()
    tree = parse(text, path, diags)
    if tree is None:
        return None
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 20000))
        return _Formatter(text, tree).format()
    except RecursionError:
        diags.error("E001", "syntax error: input too deeply nested to format", Span.point(path, 1, 1))
        return None
    finally:
        sys.setrecursionlimit(limit)
