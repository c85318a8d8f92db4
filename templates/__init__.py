"""The built-in report templates (installed as ``xlspec.templates``): every ``*.j2`` file in
this folder.  A spec names one (``report main = "report.md.j2"``) or a template file of its
own; the context they are rendered with is documented in templates/README.md."""

from __future__ import annotations

import os

TEMPLATE_DIR = os.path.dirname(os.path.abspath(__file__))

BUILTIN_TEMPLATES: tuple[str, ...] = tuple(sorted(f for f in os.listdir(TEMPLATE_DIR) if f.endswith(".j2")))

DEFAULT_REPORTS: tuple[tuple[str, str], ...] = (("html", "report.html.j2"), ("markdown", "report.md.j2"))
"""(name, template) of the reports a plan gets when its spec declares none."""
