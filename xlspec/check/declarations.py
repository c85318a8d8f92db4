"""Declarations: every declaration of the loaded files, by kind and name.

``collect_declarations(files, diags) -> Declarations``.  Reports unknown kinds, an
``experiment`` outside the top-level file, duplicate names (per kind), a second experiment,
and declarations of the wrong shape (title, ``= value`` and ``{ ... }`` block, as
:data:`~xlspec.check.vocabulary.DECLARATIONS` says each kind takes them).  A duplicate is
left out; a declaration of the wrong shape is kept (later passes skip the parts it lacks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import ast
from ..diagnostics import Diagnostics, Span
from .context import did_you_mean, where
from .load import LoadedFile
from .vocabulary import DECLARATIONS, KINDS


@dataclass
class Declarations:
    root: LoadedFile
    by_kind: dict[str, dict[str, ast.Decl]] = field(default_factory=lambda: {k: {} for k in KINDS})
    """kind -> name -> declaration, in declaration order (the root file's first)."""
    folders: dict[int, str] = field(default_factory=dict)
    """id(declaration) -> the folder of the file declaring it (paths in it are relative to it)."""

    def __getitem__(self, kind: str) -> dict[str, ast.Decl]:
        return self.by_kind[kind]

    def folder(self, d: ast.Decl) -> str:
        return self.folders[id(d)]

    @property
    def experiment(self) -> ast.Decl | None:
        return next(iter(self.by_kind["experiment"].values()), None)

    def anchor(self) -> Span:
        """Where a problem of the spec as a whole is reported: the experiment's name, else
        the top of the root file."""
        exp = self.experiment
        return exp.name.span if exp is not None else Span.point(self.root.tree.path, 1, 1)


def collect_declarations(files: list[LoadedFile], diags: Diagnostics) -> Declarations:
    decls = Declarations(root=files[0])
    for f in files:
        for d in f.tree.decls:
            _collect(d, f, decls, diags)
    if decls.experiment is None:
        diags.error("E013", "no `experiment` declaration", Span.point(decls.root.tree.path, 1, 1), hint='start the file with: experiment NAME "Title"')
    return decls


def _collect(d: ast.Decl, f: LoadedFile, decls: Declarations, diags: Diagnostics) -> None:
    kind = d.kind.text
    if kind not in KINDS:
        diags.error("E013", f"unknown declaration kind `{kind}`", d.kind.span, hint=did_you_mean(kind, KINDS, f"one of: {', '.join(KINDS)}"))
        return
    if kind == "experiment" and f is not decls.root:
        diags.error("E013", "`experiment` belongs in the top-level spec, not in an imported file", d.kind.span)
        return
    table = decls[kind]
    if d.name.text in table:
        first = table[d.name.text]
        diags.error("E004", f"duplicate {kind} `{d.name.text}`", d.name.span, context=first.name.span, notes=[f"first declared at {where(first.name.span)}"])
        return
    if kind == "experiment" and table:
        first = next(iter(table.values()))
        diags.error("E004", "a spec declares one experiment", d.name.span, notes=[f"first declared at {where(first.name.span)}"])
        return
    table[d.name.text] = d
    decls.folders[id(d)] = os.path.dirname(f.path)
    _check_shape(d, diags)


def _check_shape(d: ast.Decl, diags: Diagnostics) -> None:
    """Which parts (title, value, block) the kind takes."""
    kind = d.kind.text
    shape = DECLARATIONS[kind]
    wants_body = shape.body == "required"
    if d.title is not None and not shape.title:
        diags.error("E013", f"a {kind} takes no title string", d.title.span)
    if shape.value and d.value is None:
        diags.error("E013", f"`{kind} {d.name.text}` needs a value: {kind} {d.name.text} = ...", d.name.span)
    if not shape.value and d.value is not None:
        diags.error("E013", f"a {kind} takes no `= value`" + (" but a { ... } block" if wants_body else ""), d.value.span)
    if wants_body and d.body is None:
        diags.error("E013", f"`{kind} {d.name.text}` needs a {{ ... }} block", d.name.span)
    if shape.body == "no" and d.body is not None:
        diags.error("E013", f"a {kind} takes no {{ ... }} block", d.body.span)


def referenced_names(decls: Declarations, kinds: tuple[str, ...] | None = None) -> set[str]:
    """The names the declarations of ``kinds`` (all kinds: None) refer to; a declaration
    naming itself does not count (so a group or metric defined through itself is not
    "used")."""
    used: set[str] = set()
    for kind in kinds if kinds is not None else tuple(decls.by_kind):
        for d in decls[kind].values():
            stack = ast.children(d)
            while stack:
                node = stack.pop()
                if isinstance(node, ast.Ref):
                    if node.parts[0].text != d.name.text or d.kind.text != kind:
                        used.add(node.parts[0].text)
                    continue
                stack.extend(ast.children(node))
    return used
