"""Metrics and reports of a run: ``metrics.parquet``, then every report template of the plan.

``build_reports(run_dir, plan)`` reads ``<run_dir>/results.parquet`` (one row per request,
``runtime/schema.py``), computes every study's metrics with
``xlspec.runtime.metrics.compute_metrics`` on the rows of the study's cells, writes
``<run_dir>/metrics.parquet`` (atomically) and renders each report of the plan
(``plan.reports``; both built-ins when it has none) into ``<run_dir>/report.<ext>``.
The output is named after the template's extension: ``x.html.j2`` -> ``report.html``; a
second report with an extension already written goes to ``report-<name>.<ext>``.  A broken
user template is reported and does not stop the other reports.

Laid out by concern (the template context and filters are documented in
``templates/README.md``):

- ``context.py``: :func:`render_context`, the template context.
- ``compute.py``: the metrics a report shows (declared, headline, pooled for the summary).
- ``findings.py``: summary prose and tables, metric tables and pivots, flipped items,
  refusals with leaked options.
- ``charts.py``: matplotlib figures as inline SVG.
- ``render.py``: the Jinja environment, filters, template lookup, output names.
- ``common.py``: small helpers they share.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xlspec.axes import CELL_AXIS_NAMES, INTEGER_AXES
from xlspec.files import atomic_write_text
from xlspec.plan import Plan
from xlspec.templates import DEFAULT_REPORTS

from ..store import atomic_write_table
from .charts import PNG_DPI, write_chart_files
from .compute import N_BOOT
from .context import render_context
from .render import output_extension, render, safe_name

__all__ = ["build_reports", "METRICS_SCHEMA", "ResultsUnreadable", "render_context"]


class ResultsUnreadable(Exception):
    """``results.parquet`` cannot be read as a results table (damaged, truncated, another
    file): ``xlspec run`` writes it again from the run's cell files."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

METRICS_SCHEMA = pa.schema(
    [("study", pa.string()), ("metric", pa.string())]
    + [
        ("metric_name", pa.string()),
        ("output", pa.string()),
        ("of_metric", pa.string()),
        ("contrast_axis", pa.string()),
        ("contrast_a", pa.string()),
        ("contrast_b", pa.string()),
        ("by", pa.list_(pa.string())),
        ("params", pa.map_(pa.string(), pa.string())),
    ]
    + [(a, pa.int32() if a in INTEGER_AXES else pa.string()) for a in CELL_AXIS_NAMES]
    + [("value", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("n", pa.int64())]
)
"""``metrics.parquet``: one row per (study, metric, group); a study grouping by a result
axis beyond the cell axes (``answer_kind``, ``sample``) adds it as a string column."""


def build_reports(run_dir: str, plan: Plan, plan_path: str | None = None, n_boot: int = N_BOOT) -> list[str]:
    """Compute ``metrics.parquet`` and render every report of ``plan`` for the run in
    ``run_dir``.  ``plan_path`` (default: the manifest's ``"plan"``) locates user templates,
    which are relative to the spec.  Returns the lines to print (``wrote <path>``,
    warnings)."""
    lines: list[str] = []
    results_path = os.path.join(run_dir, "results.parquet")
    if not os.path.exists(results_path):
        return [f"{run_dir}: no results.parquet (nothing to report; run `xlspec run` first)"]
    manifest = _read_manifest(run_dir)
    if plan_path is None and manifest.get("plan"):
        plan_path = os.path.normpath(os.path.join(run_dir, manifest["plan"]))

    results = _load_results(results_path, plan)
    warnings: list[str] = []
    ctx = render_context(results, plan, manifest, warnings, n_boot=n_boot)

    metrics_path = os.path.join(run_dir, "metrics.parquet")
    atomic_write_table(_metrics_table(ctx["metrics"], plan), metrics_path)
    lines.append(f"wrote {metrics_path} ({len(ctx['metrics'])} metric rows)")

    try:
        files = write_chart_files(ctx["charts"], os.path.join(run_dir, "charts"))
        if files:
            lines.append(f"wrote {len(files)} chart files (PDF, PNG at {PNG_DPI} dpi) in {os.path.join(run_dir, 'charts')}")
    except Exception as e:  # a chart that cannot be saved must not lose the reports
        warnings.append(f"chart files: {type(e).__name__}: {e}")

    reports = [(r.name, r.template) for r in plan.reports] or list(DEFAULT_REPORTS)
    written: set[str] = set()
    for rep_name, template in reports:
        ext = output_extension(template)
        name = f"report.{ext}"
        if name in written:
            name = f"report-{safe_name(rep_name or 'report')}.{ext}"
        try:
            text = render(template, ext, ctx, plan, plan_path)
        except Exception as e:  # a broken user template must not lose the other reports
            msg = f"report {rep_name!r} ({template}): {type(e).__name__}: {e}"
            warnings.append(msg)
            lines.append(f"error: {msg}")
            continue
        out = os.path.join(run_dir, name)
        atomic_write_text(out, text)
        written.add(name)
        lines.append(f"wrote {out}")
    lines.extend(f"warning: {w}" for w in warnings if not any(w in ln for ln in lines))
    return lines


def _read_manifest(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _load_results(path: str, plan: Plan) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ResultsUnreadable(path, f"not a readable Parquet file ({first})") from None
    needed = [c for c in ("cell_id", "request_id", "item_id", "answer_kind") if c not in table.column_names]
    if needed:
        raise ResultsUnreadable(path, f"not a results table: it has no {', '.join(needed)} column")
    df = table.to_pandas()
    absent = [a for a in CELL_AXIS_NAMES if a not in df.columns]
    if absent:
        # Results written before the table carried every cell axis (the seed): from the
        # plan's cells.
        axes = {c.id: c.axes for c in plan.cells}
        for a in absent:
            df[a] = df["cell_id"].map(lambda cid, a=a: axes.get(cid, {}).get(a)).astype(object) if len(df) else pd.Series([], dtype=object)
    return df


def metric_columns(plan: Plan) -> dict[tuple[str, str], dict]:
    """(study, metric label) -> the label's parts as columns: the metric's name, the metric
    it is computed from, the contrast (axis, a, b), ``by``, and every other argument in
    ``params``, spelled as the label spells them, so a query filters on them rather than
    parsing labels."""
    from ..metrics.derived import expression_text
    from ..metrics.registry import arg_text, side_text

    out: dict[tuple[str, str], dict] = {}
    for study, entry in plan.data.get("studies", {}).items():
        for m in entry.get("metrics", []):
            args = dict(m.get("args") or {})
            if m["name"] == "derived" and isinstance(args.get("expr"), dict):
                args["expr"] = expression_text(args["expr"])  # the expression, as one line
            inner = args.pop("metric", None)
            pair = next((args.pop(k) for k, v in list(args.items()) if isinstance(v, dict) and {"axis", "a", "b"} <= set(v)), None)
            out[(study, m["label"])] = {
                "metric_name": m["name"],
                "of_metric": None if inner is None else arg_text(inner),
                "contrast_axis": pair["axis"] if pair else None,
                "contrast_a": side_text(pair["a"]) if pair else None,
                "contrast_b": side_text(pair["b"]) if pair else None,
                "by": m.get("by"),
                "params": [(k, side_text(v) if isinstance(v, (list, tuple)) else arg_text(v)) for k, v in args.items()] or None,
            }
    return out


def _metrics_table(rows: list[dict], plan: Plan | None = None) -> pa.Table:
    parts = metric_columns(plan) if plan is not None else {}
    rows = [_with_parts(r, parts) for r in rows]
    cols = {f.name: [r.get(f.name) for r in rows] for f in METRICS_SCHEMA}
    extra = sorted({k for r in rows for k in r} - set(cols))
    schema = METRICS_SCHEMA
    for k in extra:  # group axes beyond the cell axes (a study grouping by answer_kind, ...)
        cols[k] = [None if r.get(k) is None else str(r.get(k)) for r in rows]
        schema = schema.append(pa.field(k, pa.string()))
    return pa.table(cols, schema=schema)


def _with_parts(row: dict, parts: dict[tuple[str, str], dict]) -> dict:
    """The row with its label's parts (``rank_stability(...).tau``: output ``tau``)."""
    label = row.get("metric") or ""
    found = parts.get((row.get("study"), label))
    output = None
    if found is None and "." in label:
        base, output = label.rsplit(".", 1)
        found = parts.get((row.get("study"), base))
    if found is None:
        return row
    return {**row, **found, "output": output}
