"""Parse phase: .xls text -> :class:`xlspec.ast.File`, or located syntax diagnostics.

The parser never raises on bad input: lark's errors become ``E001`` diagnostics naming what
was expected, and the parse recovers at the next declaration so one pass reports every
syntax error in a file.
"""

from __future__ import annotations

import functools
import re
import textwrap
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .diagnostics import Diagnostics, Span

GRAMMAR_FILE = "xlspec.lark"


@functools.lru_cache(maxsize=1)
def grammar_text() -> str:
    return resources.files("xlspec.grammar").joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def grammar_version() -> str:
    m = re.search(r"GRAMMAR_VERSION = (\d+)", grammar_text())
    return m.group(1) if m else "0"


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    # cache=True keeps the built LALR tables in the temp dir (keyed by grammar and lark version):
    # building them takes ~0.4 s, loading them ~20 ms.
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True, cache=True)


# Human names for terminals in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "EQUAL": "'='",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "DOT": "'.'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "AMPERSAND": "'&'",
    "COMP_OP": "a comparison",
    "IMPORT": "'import'",
    "AND": "'and'",
    "OR": "'or'",
    "NOT": "'not'",
    "IN": "'in'",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "$END": "end of file",
}


_VALUE_START = {"STRING", "NUMBER", "NAME", "LSQB", "LBRACE"}


def _expected(names) -> str:
    names = {n for n in names if not n.startswith("__")}
    if _VALUE_START <= names:
        # Where any expression may start, say so rather than list every first token.
        names = (names - _VALUE_START - {"LPAR", "NOT", "TRUE", "FALSE"}) | {"a value"}
    shown = sorted({_TERMINAL_NAMES.get(n, n) for n in names})
    if not shown:
        return ""
    if len(shown) > 6:
        shown = shown[:6] + ["..."]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def _token_desc(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    text = str(tok)
    if len(text) > 20:
        text = text[:17] + "..."
    return f"'{text}'"


# ---- string literals ---------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r", "0": "\0"}


def decode_string(raw: str) -> str:
    """Decode a string literal.  Triple-quoted strings drop a leading newline and the common
    indentation, so a long template can sit indented inside its block."""
    if raw.startswith('"""'):
        body = raw[3:-3]
        if body.startswith("\n"):
            body = body[1:]
        body = textwrap.dedent(body)
        body = re.sub(r"\n[ \t]*\Z", "", body)
    else:
        body = raw[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6] or ""):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(n, "\\" + n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


# ---- tree -> AST -------------------------------------------------------------------------


class _Build(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta) -> Span | None:
        if getattr(meta, "empty", True):
            return None
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tspan(tok))

    def start(self, items):
        return list(items)

    @v_args(meta=True)
    def import_stmt(self, meta, children):
        (tok,) = children
        return ast.Import(ast.Str(decode_string(str(tok)), str(tok), self._tspan(tok)), self._span(meta))

    @v_args(meta=True)
    def decl(self, meta, children):
        kind, name, title, value, body = children
        t = ast.Str(decode_string(str(title)), str(title), self._tspan(title)) if title is not None else None
        return ast.Decl(self._ident(kind), self._ident(name), t, value, body, self._span(meta))

    @v_args(meta=True)
    def block(self, meta, children):
        return ast.Block(tuple(children), self._span(meta))

    @v_args(meta=True)
    def setting(self, meta, children):
        key, value = children
        return ast.Setting(self._ident(key), value, self._span(meta))

    @v_args(meta=True)
    def string(self, meta, children):
        (tok,) = children
        return ast.Str(decode_string(str(tok)), str(tok), self._tspan(tok))

    @v_args(meta=True)
    def number(self, meta, children):
        (tok,) = children
        return ast.Num(float(tok), str(tok), self._tspan(tok))

    @v_args(meta=True)
    def true(self, meta, children):
        return ast.Bool(True, self._span(meta))

    @v_args(meta=True)
    def false(self, meta, children):
        return ast.Bool(False, self._span(meta))

    @v_args(meta=True)
    def ref(self, meta, children):
        *parts, index = children
        return ast.Ref(tuple(self._ident(p) for p in parts), self._ident(index) if index is not None else None, self._span(meta))

    @v_args(meta=True)
    def call(self, meta, children):
        func, *args = children
        args = [a for a in args if a is not None]
        return ast.Call(self._ident(func), tuple(args), self._span(meta))

    @v_args(meta=True)
    def kwarg(self, meta, children):
        name, value = children
        return ast.KwArg(self._ident(name), value, self._span(meta))

    @v_args(meta=True)
    def list(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None), self._span(meta))

    @v_args(meta=True)
    def map(self, meta, children):
        return ast.MapExpr(tuple(c for c in children if c is not None), self._span(meta))

    @v_args(meta=True)
    def entry(self, meta, children):
        key, value = children
        quoted = key.type == "STRING"
        text = decode_string(str(key)) if quoted else str(key)
        return ast.Entry(ast.Ident(text, self._tspan(key)), value, quoted, self._span(meta))

    def _bin(op):
        @v_args(meta=True)
        def build(self, meta, children):
            left, right = children
            return ast.BinOp(op, left, right, self._span(meta))

        return build

    union = _bin("+")
    difference = _bin("-")
    intersection = _bin("&")
    or_ = _bin("or")
    and_ = _bin("and")
    member = _bin("in")
    not_member = _bin("not in")

    @v_args(meta=True)
    def compare(self, meta, children):
        left, op, right = children
        return ast.BinOp(str(op), left, right, self._span(meta))

    @v_args(meta=True)
    def not_(self, meta, children):
        (operand,) = children
        return ast.Not(operand, self._span(meta))


# ---- entry point -------------------------------------------------------------------------

_MAX_SYNTAX_ERRORS = 10


def parse(text: str, file: str = "<string>", diags: Diagnostics | None = None) -> ast.File | None:
    """Parse ``text``.  Returns the file's AST, or None when it has syntax errors (which are
    added to ``diags``).  Never raises on bad input."""
    diags = diags if diags is not None else Diagnostics()
    comments: list[ast.Comment] = []
    errors: list[tuple[int, int]] = []
    tree = None
    offset = 0  # the line the current attempt starts at (0-based)
    lines = text.split("\n")
    while True:
        chunk = "\n" * offset + "\n".join(lines[offset:])
        try:
            tree = _parser().parse(chunk)
            break
        except UnexpectedInput as e:
            _report(e, file, diags, errors, chunk)
        except RecursionError:  # pathological nesting: still a diagnostic
            diags.error("E001", "syntax error: input too deeply nested", Span.point(file, 1, 1))
            return None
        # Panic mode: go on at the next line that starts a declaration, so one pass reports
        # the errors of every declaration, not just the first.
        err_line, err_col = errors[-1]
        # An unexpected token in column 1 usually starts the next declaration (the previous
        # one was left open): resume right there; otherwise on the line after the error.
        resume = err_line - 1 if (err_col == 1 and err_line - 1 > offset) else err_line
        offset = _next_decl_line(lines, max(resume, offset + 1))
        if offset is None or len(errors) >= _MAX_SYNTAX_ERRORS:
            break
    if errors or tree is None:
        return None
    for tok in _comments(text):
        comments.append(ast.Comment(tok[2], Span(file, tok[0], tok[1], tok[0], tok[1] + len(tok[2]))))
    try:
        items = _Build(file).transform(tree)
    except VisitError as e:  # lark wraps what a tree-building method raised
        if not isinstance(e.orig_exc, RecursionError):
            raise
        diags.error("E001", "syntax error: input too deeply nested", Span.point(file, 1, 1))
        return None
    except RecursionError:
        diags.error("E001", "syntax error: input too deeply nested", Span.point(file, 1, 1))
        return None
    return ast.File(tuple(items), file, tuple(comments))


_COMMENT_SCAN = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def _comments(text: str):
    """(line, col, text) of every comment; strings are skipped so a '#' inside one is text."""
    out = []
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    import bisect

    for m in _COMMENT_SCAN.finditer(text):
        if m.group().startswith("#"):
            line = bisect.bisect_right(line_starts, m.start())
            out.append((line, m.start() - line_starts[line - 1] + 1, m.group()))
    return out


_DECL_START = re.compile(r"(import\b|[A-Za-z_][A-Za-z0-9_]*\s+[A-Za-z_])")


def _next_decl_line(lines: list[str], after: int) -> int | None:
    """0-based index of the first line at or after 1-based line ``after`` + 1 that starts a
    declaration in column 1."""
    for i in range(after, len(lines)):
        if _DECL_START.match(lines[i]):
            return i
    return None


_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _unclosed(text: str, line: int, col: int) -> tuple[str, int, int] | None:
    """The innermost bracket still open at (line, col), skipping strings and comments."""
    stack: list[tuple[str, int, int]] = []
    for m in re.finditer(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[()\[\]{}]', text):
        ln = text.count("\n", 0, m.start()) + 1
        cn = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        if (ln, cn) >= (line, col):
            break
        tok = m.group()
        if tok in _OPENERS:
            stack.append((tok, ln, cn))
        elif tok in ")]}" and stack and _OPENERS[stack[-1][0]] == tok:
            stack.pop()
    return stack[-1] if stack else None


def _report(e: UnexpectedInput, file: str, diags: Diagnostics, seen: list[tuple[int, int]], text: str = "") -> None:
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            line, col = _end_position(e)
        seen.append((line, col))
        expected = _expected(e.accepts or e.expected)
        width = len(str(tok)) if tok.type != "$END" else 1
        msg = f"unexpected {_token_desc(tok)}"
        hint = f"expected {expected}" if expected else None
        if tok.type == "NAME" and "=" in (expected or "") and "'='" in expected:
            hint = f"expected {expected} (a setting is written `key = value`)"
        notes = []
        closers = {"RSQB": "]", "RPAR": ")", "RBRACE": "}"}
        wanted = {closers[t] for t in (e.accepts or e.expected) if t in closers}
        opened = _unclosed(text, line, col) if wanted and text else None
        if opened and _OPENERS[opened[0]] in wanted:
            notes.append(f"the '{opened[0]}' at {file}:{opened[1]}:{opened[2]} is not closed")
        diags.error("E001", f"syntax error: {msg}", Span.point(file, line, col, width), hint=hint, notes=notes)
    elif isinstance(e, UnexpectedCharacters):
        seen.append((line, col))
        ch = e.char
        hint = None
        if ch == '"':
            hint = "a string is not closed on this line (use triple quotes for text over several lines)"
        elif ch == "'":
            hint = "strings use double quotes"
        diags.error("E001", f"syntax error: unexpected character {ch!r}", Span.point(file, line, col), hint=hint)
    elif isinstance(e, UnexpectedEOF):
        seen.append((line, col))
        diags.error("E001", "syntax error: unexpected end of file", Span.point(file, line, col), hint=f"expected {_expected(e.expected)}")
    else:  # pragma: no cover - lark has no other kinds today
        seen.append((line, col))
        diags.error("E001", f"syntax error: {e}", Span.point(file, line, col))


def _end_position(e: UnexpectedToken) -> tuple[int, int]:
    state = getattr(e, "interactive_parser", None)
    try:
        last = state.lexer_thread.state.last_token if state is not None else None
    except AttributeError:
        last = None
    if last is not None:
        return last.end_line or 1, last.end_column or 1
    return 1, 1
