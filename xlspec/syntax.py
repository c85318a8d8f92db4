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

from lark import Lark, Token, Transformer_NonRecursive, v_args
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
    indentation, so a long template can sit indented inside its block.  ``\\uXXXX`` escapes
    of a surrogate pair make one character; a lone surrogate stays in the result for the
    parser to report (:func:`lone_surrogate`)."""
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
                code = int(body[i + 2 : i + 6], 16)
                low = body[i + 6 : i + 12]
                if 0xD800 <= code < 0xDC00 and re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", low):
                    code = 0x10000 + ((code - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00)
                    i += 6
                out.append(chr(code))
                i += 6
                continue
            out.append(_ESCAPES.get(n, "\\" + n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """The escape of the first lone surrogate in decoded text (it cannot be written as UTF-8,
    so no plan or result could hold it), or None."""
    m = _SURROGATE.search(text)
    return f"\\u{ord(m.group()):04x}" if m else None


# ---- tree -> AST -------------------------------------------------------------------------


class _Build(Transformer_NonRecursive):
    """Parse tree -> AST.  Not recursive, so nesting depth cannot exhaust the Python stack;
    :func:`_too_deep` then bounds the depth the later phases see."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.problems: list[tuple[Span, str]] = []

    def _str(self, tok: Token) -> ast.Str:
        value = decode_string(str(tok))
        bad = lone_surrogate(value)
        if bad:
            self.problems.append((self._tspan(tok), f"the escape {bad} is half of a surrogate pair and not a character"))
        return ast.Str(value, str(tok), self._tspan(tok))

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
        return ast.Import(self._str(tok), self._span(meta))

    @v_args(meta=True)
    def decl(self, meta, children):
        kind, name, title, value, body = children
        t = self._str(title) if title is not None else None
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
        return self._str(tok)

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
        text = self._str(key).value if quoted else str(key)
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
    # Before parsing, bounds the parser would spend long on for nothing.
    deep = _brackets_too_deep(text, file)
    if deep is not None:
        diags.error("E001", f"syntax error: brackets nested more than {MAX_DEPTH} levels deep", deep)
        return None
    many = _too_many_tokens(text, file)
    if many is not None:
        diags.error("E001", f"syntax error: more than {MAX_TOKENS:,} tokens in one file", many, hint="split the spec into files joined with `import`")
        return None
    while True:
        chunk = "\n" * offset + "\n".join(lines[offset:])
        try:
            tree = _parser().parse(chunk)
            break
        except UnexpectedInput as e:
            _report(e, file, diags, errors, chunk)
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
    build = _Build(file)
    try:
        items = build.transform(tree)
    except (VisitError, RecursionError):  # pragma: no cover - the builder does not recurse
        diags.error("E001", "syntax error: input too deeply nested", Span.point(file, 1, 1))
        return None
    for span, message in build.problems:
        diags.error("E001", f"syntax error: {message}", span, hint="write the character itself, or both halves of the pair (\\ud83d\\ude00)")
    deep = _too_deep(items)
    if deep is not None:
        diags.error("E001", f"syntax error: nested more than {MAX_DEPTH} levels deep", deep, hint="an operator chain counts one level per operator; use a list: [a, b, c]")
    if build.problems or deep is not None:
        return None
    return ast.File(tuple(items), file, tuple(comments))


MAX_DEPTH = 100
"""How deeply values may nest (brackets, calls, blocks, operators); every later phase may
then walk the AST recursively."""


_STRINGS_AND_COMMENTS = r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*'
"""Strings (triple-quoted first) and comments: what the scans of the text step over whole."""


MAX_TOKENS = 100_000
"""Parsing costs ~50 us a token on a slow machine: a file the size of a hundred example
specs still parses in seconds, and a megabyte of `en, en, ...` is refused at once."""

_TOKEN_SCAN = re.compile(_STRINGS_AND_COMMENTS + r"|[A-Za-z_0-9][\w.-]*|\S")


def _too_many_tokens(text: str, file: str) -> Span | None:
    if len(text) < MAX_TOKENS:
        return None
    for n, m in enumerate(_TOKEN_SCAN.finditer(text)):
        if n == MAX_TOKENS:
            return Span.point(file, *_position(_line_starts(text), m.start()))
    return None


def _brackets_too_deep(text: str, file: str) -> Span | None:
    """The opening bracket that first goes past MAX_DEPTH, skipping strings and comments."""
    depth = 0
    for m in _BRACKET_SCAN.finditer(text):
        tok = m.group()
        if tok in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                return Span.point(file, *_position(_line_starts(text), m.start()))
        elif tok in ")]}":
            depth = max(0, depth - 1)
    return None


def _too_deep(items) -> Span | None:
    """The span of the first node nested deeper than MAX_DEPTH, or None.  Iterative."""
    stack = [(item, 0, None) for item in reversed(items)]
    while stack:
        node, depth, where = stack.pop()
        span = getattr(node, "span", None) or where
        if depth > MAX_DEPTH:
            return span
        stack.extend((child, depth + 1, span) for child in reversed(ast.children(node)))
    return None


_COMMENT_SCAN = re.compile(_STRINGS_AND_COMMENTS)


def _comments(text: str):
    """(line, col, text) of every comment; strings are skipped so a '#' inside one is text."""
    out = []
    starts = _line_starts(text)
    for m in _COMMENT_SCAN.finditer(text):
        if m.group().startswith("#"):
            out.append((*_position(starts, m.start()), m.group()))
    return out


def _line_starts(text: str) -> list[int]:
    """The offset each line starts at (lines end at "\\n" only, as the parser counts)."""
    return [0] + [m.end() for m in re.finditer("\n", text)]


def _position(starts: list[int], offset: int) -> tuple[int, int]:
    """(line, column), both 1-based, of ``offset``; ``starts`` from :func:`_line_starts`."""
    import bisect

    line = bisect.bisect_right(starts, offset)
    return line, offset - starts[line - 1] + 1


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
    line_starts = _line_starts(text)
    limit = line_starts[line - 1] + col - 1 if line - 1 < len(line_starts) else len(text)
    stack: list[int] = []
    for m in _BRACKET_SCAN.finditer(text, 0, limit):
        tok = m.group()
        if tok in _OPENERS:
            stack.append(m.start())
        elif tok in ")]}" and stack and _OPENERS[text[stack[-1]]] == tok:
            stack.pop()
    if not stack:
        return None
    at = stack[-1]
    return (text[at], *_position(line_starts, at))


_BRACKET_SCAN = re.compile(_STRINGS_AND_COMMENTS + r"|[()\[\]{}]")


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
