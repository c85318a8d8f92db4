"""Reports: ``report NAME = "template"``, a built-in template
(``xlspec.templates.BUILTIN_TEMPLATES``) or a file relative to the declaring spec.

``resolve_reports(decls, diags) -> list[ReportSpec]``.  A template file is rendered into the
run folder, so a spec may name only a Jinja template (:data:`TEMPLATE_EXTENSIONS`) inside
the root spec's folder (symbolic links resolved): ``report r = "../../etc/passwd"`` is E019
and the file is never opened.
"""

from __future__ import annotations

import os

from .. import ast
from ..diagnostics import Diagnostics
from ..spec import ReportSpec
from ..templates import BUILTIN_TEMPLATES
from .context import span_of
from .datasets import inside_folder, outside_note, path_problem
from .declarations import Declarations

TEMPLATE_EXTENSIONS = (".j2", ".jinja")
"""What a report template file's name ends with (``brief.txt.j2`` writes ``report.txt``)."""


def resolve_reports(decls: Declarations, diags: Diagnostics) -> list[ReportSpec]:
    out = []
    for name, d in decls["report"].items():
        if not isinstance(d.value, ast.Str):
            if d.value is not None:
                diags.error("E014", 'a report names a Jinja template: report main = "report.html.j2"', span_of(d.value))
            continue
        template = d.value.value
        if template in BUILTIN_TEMPLATES:
            out.append(ReportSpec(name=name, template=template))
            continue
        bad = path_problem(template)
        if bad is not None:
            diags.error("E010", f"the report template path {bad}", d.value.span)
            continue
        abs_path = os.path.normpath(os.path.join(decls.folder(d), template))
        if not inside_folder(abs_path, os.path.dirname(decls.root.path)):
            diags.error(
                "E019", f"report template {template} is outside the spec's folder", d.value.span,
                hint=f"use a built-in template ({', '.join(BUILTIN_TEMPLATES)}) or a template file in the spec's folder",
                notes=[outside_note(abs_path, decls.root.path)],
            )
            continue
        if not template.lower().endswith(TEMPLATE_EXTENSIONS):
            diags.error(
                "E014", f"a report template is a Jinja file named *{' or *'.join(TEMPLATE_EXTENSIONS)}: {template}", d.value.span,
                hint=f"name it after what it writes, then .j2 (brief.txt.j2 writes report.txt); built-in templates: {', '.join(BUILTIN_TEMPLATES)}",
            )
            continue
        if not os.path.lexists(abs_path):
            diags.error("E010", f"report template not found: {template}", d.value.span, hint=f"built-in templates: {', '.join(BUILTIN_TEMPLATES)}; a file path is relative to the spec")
            continue
        if not os.path.isfile(abs_path):
            diags.error("E010", f"report template {template} is not a regular file", d.value.span)
            continue
        out.append(ReportSpec(name=name, template=template, abs_path=abs_path))
    return out
