"""Rendering: the Jinja environment (sandboxed, strict, autoescaped for markup outputs), the
filters templates use, where a template is found and what its output is called.

Built-in templates (``report.html.j2``, ``report.md.j2``) live in ``xlspec.templates``; any
other template name is a path relative to the spec file (whose path the plan records
relative to the plan file; the plan file is ``plan_path``, or the manifest's ``"plan"``,
relative to the run folder).  A user template is loaded from its own folder, so it can
``{% include %}`` its neighbours, and can ``{% extends %}`` or ``{% import %}`` the
built-ins.
"""

from __future__ import annotations

import math
import os
import re

from xlspec.plan import Plan
from xlspec.templates import BUILTIN_TEMPLATES, TEMPLATE_DIR

from .common import clean

ESCAPED_EXTENSIONS = ("html", "htm", "xml", "svg")
"""Outputs rendered with autoescaping: model outputs are untrusted text."""


# ----------------------------------------------------------------------------- filters


def num(x) -> str:
    """A number with 3 decimals; None -> "—"."""
    x = clean(x)
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    s = f"{v:.3f}"
    return "0.000" if s == "-0.000" else s


def ci(c) -> str:
    """``[lo, hi]`` of a stat; "" without an interval."""
    if not isinstance(c, dict) or clean(c.get("ci_low")) is None or clean(c.get("ci_high")) is None:
        return ""
    return f"[{num(c['ci_low'])}, {num(c['ci_high'])}]"


def stat(c) -> str:
    """``value [lo, hi]`` of a stat."""
    if not isinstance(c, dict):
        return num(c) if isinstance(c, (int, float)) or c is None else str(c)
    interval = ci(c)
    return num(c.get("value")) + (f" {interval}" if interval else "")


def pct(x) -> str:
    """A share as a percentage: 0.25 -> "25.0%"."""
    x = clean(x)
    return "—" if x is None else f"{100 * float(x):.1f}%"


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>#|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_MD_TEXT = re.compile(r"([`*<>|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def md(text) -> str:
    """Untrusted text (model outputs, item ids, answers) for a Markdown table cell: one
    line; Markdown and HTML characters backslash-escaped, so a pull-request comment shows
    ``<script>`` or ``[x](y)`` as text.  ``None`` -> "—"."""
    if text is None:
        return "—"
    s = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", s)


def mdtext(text) -> str:
    """Our own text (labels, findings, notes) for Markdown: one line, table pipes, HTML
    brackets and emphasis escaped; brackets and parentheses kept readable."""
    if text is None:
        return "—"
    s = " ".join(str(text).split())
    return _MD_TEXT.sub(r"\\\1", s)


def excerpt(text, n: int = 120) -> str:
    """One line, at most ``n`` characters."""
    if text is None:
        return ""
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


FILTERS = {"num": num, "ci": ci, "stat": stat, "pct": pct, "md": md, "mdtext": mdtext, "excerpt": excerpt}


# ----------------------------------------------------------------------------- output names


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "report"


def output_extension(template: str) -> str:
    """The extension a template writes: ``x.html.j2`` -> ``html`` (``txt`` without one)."""
    base = os.path.basename(template)
    if base.endswith(".j2"):
        base = base[:-3]
    elif base.endswith(".jinja"):
        base = base[:-6]
    ext = base.rsplit(".", 1)[1] if "." in base else "txt"
    return safe_name(ext.lower())


# ----------------------------------------------------------------------------- rendering


def environment(ext: str, loader):
    """Jinja's ``SandboxedEnvironment`` (a template cannot reach Python internals) with
    ``StrictUndefined`` (a typo is an error, not an empty string), autoescaping for
    ``ESCAPED_EXTENSIONS`` and the report's filters."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=loader,
        autoescape=ext in ESCAPED_EXTENSIONS,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def render(template: str, ext: str, ctx: dict, plan: Plan, plan_path: str | None) -> str:
    """Render ``template`` (a built-in name or a path relative to the spec) with ``ctx``."""
    from jinja2 import ChoiceLoader, FileSystemLoader

    if template in BUILTIN_TEMPLATES:
        env = environment(ext, FileSystemLoader(TEMPLATE_DIR))
        return env.get_template(template).render(**ctx)
    if plan_path is None:
        raise FileNotFoundError(f"template {template!r} is relative to the spec, but the plan file is unknown (no manifest.json with a 'plan' entry)")
    path = os.path.normpath(os.path.join(plan.spec_dir(plan_path), template))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"template not found: {path}")
    # The user's template may {% extends %} or {% import %} its neighbours or the built-ins.
    env = environment(ext, ChoiceLoader([FileSystemLoader(os.path.dirname(path)), FileSystemLoader(TEMPLATE_DIR)]))
    return env.get_template(os.path.basename(path)).render(**ctx)
