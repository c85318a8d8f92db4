"""Parse phase: .xls text -> :class:`xlspec.ast.File`, or located syntax diagnostics.

The parser never raises on bad input: lark's errors become ``E001`` diagnostics naming what
was expected, and the parse recovers at the next declaration so one pass reports every
syntax error in a file.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import re
import threading
import textwrap
from importlib import resources

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.parse_tree_builder import ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

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


# ---- tokens -> AST -----------------------------------------------------------------------


class _Paren:
    """A parenthesised value on the parser's stack.  The value keeps its own span; the node
    that contains it starts or ends at the bracket, as lark's position propagation has it."""

    __slots__ = ("node", "span")

    def __init__(self, node, span: Span | None):
        self.node, self.span = node, span


class _Run:
    """The children of a helper rule (``_item``, lark's ``__list_star_0``...), which the
    rule that holds it splices into its own children.  Lighter than the Tree lark makes."""

    __slots__ = ("children",)

    def __init__(self, children: list):
        self.children = children


def _bare(value):
    return value.node if value.__class__ is _Paren else value


class _Build(Transformer):
    """Builds AST nodes while the LALR parser reduces, so no parse tree is made and walked.
    The grammar is parsed with every token kept, so a node's span runs from its first token
    (or child node) to its last one, brackets included.  Reductions are not recursive, so no
    input can exhaust the Python stack; :func:`_too_deep` then bounds the depth the later
    phases see.  One instance serves the cached parser; :func:`parse` sets ``file`` and
    ``problems`` under :data:`_PARSE_LOCK`."""

    def __init__(self):
        super().__init__(visit_tokens=False)
        self.file = "<string>"
        self.problems: list[tuple[Span, str]] = []

    def _tspan(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _span(self, children) -> Span | None:
        first = children[0]
        last = children[-1]
        if first.__class__ is Token:
            line, col = first.line, first.column
        elif first.span is None:
            return None
        else:
            line, col = first.span.line, first.span.col
        if last.__class__ is Token:
            end_line, end_col = last.end_line, last.end_column
        elif last.span is None:
            return None
        else:
            end_line, end_col = last.span.end_line, last.span.end_col
        return Span(self.file, line, col, end_line, end_col)

    def _str(self, tok: Token) -> ast.Str:
        value = decode_string(str(tok))
        bad = lone_surrogate(value)
        if bad:
            self.problems.append((self._tspan(tok), f"the escape {bad} is half of a surrogate pair and not a character"))
        return ast.Str(value, str(tok), self._tspan(tok))

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tspan(tok))

    def __default__(self, data, children, meta):
        if not data.startswith("_"):  # pragma: no cover - a grammar rule without a builder
            raise NotImplementedError(f"no AST builder for grammar rule {data!r}")
        return _Run(children)

    def start(self, children):
        return [_bare(c) for c in children]

    def import_stmt(self, children):  # "import" STRING
        return ast.Import(self._str(children[1]), self._span(children))

    def decl(self, children):  # NAME NAME [STRING] ["=" value] [block]
        title = value = body = None
        i, n = 2, len(children)
        if i < n and children[i].__class__ is Token and children[i].type == "STRING":
            title = self._str(children[i])
            i += 1
        if i < n and children[i].__class__ is Token and children[i].type == "EQUAL":
            value = _bare(children[i + 1])
            i += 2
        if i < n:
            body = children[i]
        return ast.Decl(self._ident(children[0]), self._ident(children[1]), title, value, body, self._span(children))

    def block(self, children):  # "{" setting* "}"
        return ast.Block(tuple(children[1:-1]), self._span(children))

    def setting(self, children):  # NAME "=" value
        return ast.Setting(self._ident(children[0]), _bare(children[2]), self._span(children))

    def string(self, children):
        return self._str(children[0])

    def number(self, children):
        tok = children[0]
        return ast.Num(float(tok), str(tok), self._tspan(tok))

    def true(self, children):
        return ast.Bool(True, self._tspan(children[0]))

    def false(self, children):
        return ast.Bool(False, self._tspan(children[0]))

    def atom(self, children):  # "(" value ")": the only `?atom` alternative with three tokens
        return _Paren(_bare(children[1]), self._span(children))

    def ref(self, children):  # NAME ("." NAME)* ["[" NAME "]"]
        parts, index = [], None
        for i, tok in enumerate(children):
            if tok.type == "LSQB":
                index = self._ident(children[i + 1])
                break
            if tok.type == "NAME":
                parts.append(self._ident(tok))
        return ast.Ref(tuple(parts), index, self._span(children))

    def call(self, children):  # NAME "(" [arg ("," arg)* [","]] ")"
        args = tuple(_bare(a) for a in children[2:-1] if a.__class__ is not Token)
        return ast.Call(self._ident(children[0]), args, self._span(children))

    def kwarg(self, children):  # NAME "=" value
        return ast.KwArg(self._ident(children[0]), _bare(children[2]), self._span(children))

    def list(self, children):
        return ast.ListExpr(tuple(_bare(c) for c in children[1:-1] if c.__class__ is not Token), self._span(children))

    def map(self, children):
        return ast.MapExpr(tuple(c for c in children[1:-1] if c.__class__ is not Token), self._span(children))

    def entry(self, children):  # (NAME | STRING) ":" value
        key = children[0]
        quoted = key.type == "STRING"
        text = self._str(key).value if quoted else str(key)
        return ast.Entry(ast.Ident(text, self._tspan(key)), _bare(children[2]), quoted, self._span(children))

    def _bin(op):
        def build(self, children):  # left OP right, where OP may be two tokens (`not in`)
            return ast.BinOp(op, _bare(children[0]), _bare(children[-1]), self._span(children))

        return build

    union = _bin("+")
    difference = _bin("-")
    intersection = _bin("&")
    product = _bin("*")
    quotient = _bin("/")
    or_ = _bin("or")
    and_ = _bin("and")
    member = _bin("in")
    not_member = _bin("not in")

    def compare(self, children):
        return ast.BinOp(str(children[1]), _bare(children[0]), _bare(children[2]), self._span(children))

    def not_(self, children):
        return ast.Not(_bare(children[1]), self._span(children))


class _TableParser:
    """The success path of the parse, driven by lark's own LALR tables and terminals.

    lark spends ~20 us a token in its general-purpose lexer and parser loop (a 1 MB spec
    took 2.2 s); this loop does the same shifts and reductions with the same callbacks in a
    few.  It lexes with one regex of all terminals in lark's priority order; where that
    token is not one the current state accepts (an error, or a keyword used as a name, which
    lark's contextual lexer allows) it gives up and :func:`parse` asks lark, so errors and
    every corner of the language are exactly lark's."""

    def __init__(self, lark: Lark):
        inner = lark.parser.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
        table, callbacks = inner.parse_table, inner.callbacks
        self.start_state = table.start_states["start"]
        self.end_state = table.end_states["start"]
        # state -> terminal -> (shift?, next state | rule size, rule name, callback).  Keys
        # are plain str: lark's are Tokens, whose Python-level __eq__ slows every lookup.
        self.actions: dict[int, dict[str, tuple]] = {}
        for state, row in table.states.items():
            out = self.actions[state] = {}
            for term, (action, arg) in row.items():
                if action is Shift:
                    out[str(term)] = (True, arg, None, None)
                    continue
                size, callback = len(arg.expansion), callbacks[arg]
                if size == 1 and isinstance(callback, ExpandSingleChild):
                    callback = None  # a one-child `?rule`: the child is the value
                out[str(term)] = (False, size, str(arg.origin.name), callback)
        root = lark.parser.lexer.root_lexer
        terminals = root.scanner.terminals  # lark's order, keywords folded into NAME
        self.regex = re.compile("|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals), root.g_regex_flags)
        self.ignore = frozenset(map(str, root.ignore_types))
        self.multiline = frozenset(map(str, root.newline_types))
        # NAME -> {"true": "TRUE", ...}: what lark's lexer re-types a matched name to.
        self.keywords = {str(name): {t.pattern.value: str(t.name) for t in cb.scanner.terminals} for name, cb in root.callback.items()}

    def parse(self, text: str, comments: list):
        """The start rule's value, or None where lark must decide.  Appends (line, column,
        text) of each comment to ``comments``."""
        actions, match, end_state = self.actions, self.regex.match, self.end_state
        ignore, multiline, keywords = self.ignore, self.multiline, self.keywords
        new_token = Token._future_new
        stack, values = [self.start_state], []
        size, pos, line, line_start = len(text), 0, 1, 0
        tok = None
        while True:
            if pos < size:
                m = match(text, pos)
                if m is None:
                    return None
                kind, value, end = m.lastgroup, m.group(), m.end()
                if kind in ignore:
                    if kind == "COMMENT":
                        comments.append((line, pos - line_start + 1, value))
                    elif kind in multiline and "\n" in value:
                        line += value.count("\n")
                        line_start = pos + value.rindex("\n") + 1
                    pos = end
                    continue
                if kind in keywords:
                    kind = keywords[kind].get(value, kind)
                if kind in multiline and "\n" in value:
                    end_line, end_start = line + value.count("\n"), pos + value.rindex("\n") + 1
                else:
                    end_line, end_start = line, line_start
                tok = new_token(kind, value, pos, line, pos - line_start + 1, end_line, end - end_start + 1, end)
                pos, line, line_start = end, end_line, end_start
            else:
                kind = "$END"
            while True:
                act = actions[stack[-1]].get(kind)
                if act is None:
                    return None
                shift, arg, rule, callback = act
                if shift:
                    if kind == "$END":
                        return None
                    stack.append(arg)
                    values.append(tok)
                    break
                if callback is None:
                    del stack[-1]
                elif arg:
                    children = values[-arg:]
                    del stack[-arg:]
                    del values[-arg:]
                    values.append(callback(children))
                else:
                    values.append(callback([]))
                stack.append(actions[stack[-1]][rule][1])
                if kind == "$END" and stack[-1] == end_state:
                    return values[-1]


_BUILD = _Build()
_PARSE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    # cache=True keeps the built LALR tables in the temp dir (keyed by grammar and lark version):
    # building them takes ~0.4 s, loading them ~20 ms.
    return Lark(grammar_text(), parser="lalr", keep_all_tokens=True, maybe_placeholders=False, transformer=_BUILD, cache=True)


@functools.lru_cache(maxsize=1)
def _table_parser() -> _TableParser:
    return _TableParser(_parser())


def _parse_items(text: str, file: str, *, table: bool = True) -> tuple[list, list[tuple[Span, str]], list[tuple[int, int, str]]]:
    """(top-level items, string problems, comments) of ``text``; raises lark's
    UnexpectedInput.  ``table=False`` skips the fast path (the tests compare the two)."""
    with _PARSE_LOCK, _gc_paused():
        _BUILD.file, _BUILD.problems = file, []
        comments: list[tuple[int, int, str]] = []
        items = _table_parser().parse(text, comments) if table else None
        if items is None:
            _BUILD.problems = []
            items = _parser().parse(text)
            comments = _comments(text)
        return items, _BUILD.problems, comments


@contextlib.contextmanager
def _gc_paused():
    """A megabyte of spec makes a million small objects and no reference cycles: the cyclic
    collector would walk them again and again (a third of the parse time) for nothing."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


# ---- entry point -------------------------------------------------------------------------

_MAX_SYNTAX_ERRORS = 10


def parse(text: str, file: str = "<string>", diags: Diagnostics | None = None) -> ast.File | None:
    """Parse ``text``.  Returns the file's AST, or None when it has syntax errors (which are
    added to ``diags``).  Never raises on bad input."""
    diags = diags if diags is not None else Diagnostics()
    comments: list[ast.Comment] = []
    errors: list[tuple[int, int]] = []
    items = None
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
            items, problems, found = _parse_items(chunk, file)
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
    if errors or items is None:
        return None
    for tok in found:
        comments.append(ast.Comment(tok[2], Span(file, tok[0], tok[1], tok[0], tok[1] + len(tok[2]))))
    for span, message in problems:
        diags.error("E001", f"syntax error: {message}", span, hint="write the character itself, or both halves of the pair (\\ud83d\\ude00)")
    with _gc_paused():
        deep = _too_deep(items)
    if deep is not None:
        diags.error("E001", f"syntax error: nested more than {MAX_DEPTH} levels deep", deep, hint="an operator chain counts one level per operator; use a list: [a, b, c]")
    if problems or deep is not None:
        return None
    return ast.File(tuple(items), file, tuple(comments))


MAX_DEPTH = 100
"""How deeply values may nest (brackets, calls, blocks, operators); every later phase may
then walk the AST recursively."""


_STRINGS_AND_COMMENTS = r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*'
"""Strings (triple-quoted first) and comments: what the scans of the text step over whole."""


MAX_TOKENS = 100_000
"""Parsing costs ~7 us a token on a slow machine (a dense 1 MB spec has ~70,000): the cap
bounds the time of any input, and a megabyte of `en, en, ...` is refused at once."""

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
