"""Reports: ``report NAME = "template"``, a built-in template
(``xlspec.templates.BUILTIN_TEMPLATES``) or a file relative to the declaring spec.

``resolve_reports(decls, diags) -> list[ReportSpec]``.
"""

from __future__ import annotations

import os

from .. import ast
from ..diagnostics import Diagnostics
from ..spec import ReportSpec
from ..templates import BUILTIN_TEMPLATES
from .context import span_of
from .declarations import Declarations


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
        abs_path = os.path.normpath(os.path.join(decls.folder(d), template))
        if not os.path.isfile(abs_path):
            diags.error("E010", f"report template not found: {template}", d.value.span, hint=f"built-in templates: {', '.join(BUILTIN_TEMPLATES)}; a file path is relative to the spec")
            continue
        out.append(ReportSpec(name=name, template=template, abs_path=abs_path))
    return out
