"""Groups: ``group NAME = [a, b]`` -> its members, before anything that can use a
group (language sets, studies).

``resolve_groups(decls, diags) -> dict[str, list[ast.Ref]]``: each well-formed group's
members as written (names; what they name depends on where the group is used).  A group
that is not a list of names is reported and left out; so is a group that contains itself,
directly or through other groups (it would expand forever).
"""

from __future__ import annotations

from .. import ast
from ..diagnostics import Diagnostics
from .context import span_of
from .declarations import Declarations, referenced_names


def resolve_groups(decls: Declarations, diags: Diagnostics) -> dict[str, list[ast.Ref]]:
    groups: dict[str, list[ast.Ref]] = {}
    for name, d in decls["group"].items():
        if not isinstance(d.value, ast.ListExpr) or not all(isinstance(i, ast.Ref) and i.is_name for i in d.value.items):
            if d.value is not None:
                diags.error("E014", "a group is a list of names: [a, b, c]", span_of(d.value))
            continue
        groups[name] = list(d.value.items)
    cyclic = [name for name in groups if name in _reachable(name, groups)]
    for name in cyclic:
        diags.error("E013", f"group `{name}` is defined in terms of itself", decls["group"][name].name.span)
    for name in cyclic:
        del groups[name]
    _warn_unused(decls, set(groups), diags)
    return groups


def _warn_unused(decls: Declarations, well_formed: set[str], diags: Diagnostics) -> None:
    """W001 for a well-formed group of the root file that nothing names (a library file's
    groups are there for whichever spec imports it)."""
    root = decls.root.tree.path
    mine = {name: d for name, d in decls["group"].items() if name in well_formed and d.name.span is not None and d.name.span.file == root}
    if not mine:
        return
    used = referenced_names(decls)
    for name, d in mine.items():
        if name not in used:
            diags.warning("W001", f"group `{name}` is never used", d.name.span, hint="use it in a study or a language set, or remove it")


def _reachable(start: str, groups: dict[str, list[ast.Ref]]) -> set[str]:
    """The groups that ``start``'s members name, directly or through other groups."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for member in groups.get(todo.pop(), ()):
            name = member.parts[0].text
            if name in groups and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen
