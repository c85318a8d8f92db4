"""Loading: the root spec file and everything it imports, parsed.

``load_files(root, diags, sources) -> list[LoadedFile] | None``: the root file first, then
imported files in load order.  Import paths are relative to the importing file; a file
imported twice is loaded once; a cycle is E012 at the import that closes it.  Each file's
text goes into ``sources`` (for printing diagnostics), its syntax errors into ``diags``.
None when the root file could not be read or parsed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import ast
from ..diagnostics import Diagnostics, SourceCache, Span
from ..source import SourceError, read_source
from ..syntax import parse
from .context import display


@dataclass
class LoadedFile:
    path: str
    """The real path (symbolic links resolved)."""
    text: str
    sha256: str
    tree: ast.File


def load_files(root: str, diags: Diagnostics, sources: SourceCache) -> list[LoadedFile] | None:
    loaded: dict[str, LoadedFile] = {}
    order: list[LoadedFile] = []

    def visit(path: str, stack: list[str], via: ast.Import | None) -> None:
        if "\0" in path:
            diags.error("E010", "an import path cannot contain a NUL character", via.path.span if via else None)
            return
        real = os.path.realpath(path)
        if real in stack:
            cycle = " -> ".join(display(p) for p in stack[stack.index(real):] + [real])
            diags.error("E012", f"import cycle: {cycle}", via.path.span if via else None, hint="remove one of these imports")
            return
        if real in loaded:
            return
        shown = display(path)
        try:
            source = read_source(path)
        except SourceError as e:
            if e.line is not None:  # in the file's content: point at it
                diags.error("E001", f"{shown}: {e.message}", Span.point(shown, e.line, e.col))
            else:
                diags.error("E010", f"cannot read {shown}: {e.message}", via.path.span if via else None)
            return
        text = source.text
        sources.add(shown, text)
        tree = parse(text, shown, diags)
        if tree is None:
            return
        lf = LoadedFile(real, text, source.sha256, tree)
        loaded[real] = lf
        for imp in tree.imports:
            target = os.path.join(os.path.dirname(real), imp.path.value)
            visit(target, stack + [real], imp)
        order.append(lf)

    visit(root, [], None)
    if not order:
        return None
    # The root file is last in `order`; put it first, imports after in load order.
    root_real = os.path.realpath(root)
    return sorted(order, key=lambda f: f.path != root_real)
