"""The compiler as a library: what ``xlspec compile``, ``xlspec diff``, the benchmarks and the
tests call.

``compile_file(path)`` runs the phases in order (parse -> check -> expand) and returns a
:class:`Compilation`: the plan (or None), the diagnostics and the source texts to print them
with.  Nothing here prints or exits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .diagnostics import Diagnostics, SourceCache
from .plan import Plan


@dataclass
class Compilation:
    path: str
    diagnostics: Diagnostics
    sources: SourceCache
    data: dict | None = None
    """The plan as plain data (what ``xlspec.plan.write`` writes), None after errors."""
    _plan: Plan | None = field(default=None, repr=False)

    out_dir: str = "build"
    loaded: bool = False
    """The plan was read from a plan file (``path``) rather than compiled."""

    @property
    def plan_path(self) -> str | None:
        """Where the plan is (a plan file) or would be written (a compiled spec); the plan's
        relative paths are relative to it."""
        if self.loaded:
            return self.path
        return None if self.data is None else os.path.join(self.out_dir, f"{self.data['experiment']}.plan.json")

    @property
    def ok(self) -> bool:
        return self.data is not None

    @property
    def plan(self) -> Plan | None:
        """The typed plan (built on first use: large plans cost a little to validate)."""
        if self._plan is None and self.data is not None:
            self._plan = Plan.from_data(self.data)
        return self._plan


def compile_file(path: str, out_dir: str = "build", *, allow_outside_data: bool = False) -> Compilation:
    """Check and expand one spec.  ``out_dir`` is where the plan will be written: the plan
    records the spec's path relative to it.  ``allow_outside_data``: the spec may read data
    files outside its folder (symbolic links resolved); by default that is error E019."""
    from .check import check_file
    from .expand import expand

    result = check_file(path, allow_outside_data=allow_outside_data)
    out = Compilation(path, result.diagnostics, result.sources, out_dir=out_dir)
    if result.spec is not None:
        out.data = expand(result.spec, result.records, os.path.abspath(out_dir))
    return out


def load_plan_or_spec(path: str, out_dir: str = "build", *, allow_outside_data: bool = False) -> Compilation:
    """A plan file as it is, or a spec compiled; errors as diagnostics.  A plan file that is
    not a whole plan (not JSON, not an object, another format, a missing field, a cell that
    names what the plan does not declare) is one E015 diagnostic naming the file; its cell
    ids are not derived again (a plan of an older xlspec may follow an older rule)."""
    from . import plan as planmod
    from .diagnostics import Span

    if path.endswith(".xls"):
        return compile_file(path, out_dir, allow_outside_data=allow_outside_data)
    diags, sources = Diagnostics(), SourceCache()
    out = Compilation(path, diags, sources, loaded=True)
    try:
        plan = planmod.load(path)
        planmod.verify(plan, ids=False)
    except planmod.PlanError as e:
        if e.message == "no such file":
            diags.error("E010", f"no such file: {path}", None)
        elif e.unreadable:
            diags.error("E010", f"{path}: {e.message}", None)
        elif e.line is not None:
            diags.error("E015", e.message, Span.point(path, e.line, e.col or 1))
        else:
            diags.error("E015", f"{path}: {e.message}", None)
        return out
    out._plan = plan
    out.data = plan.data
    return out
