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
    atomic_write_table(_metrics_table(ctx["metrics"]), metrics_path)
    lines.append(f"wrote {metrics_path} ({len(ctx['metrics'])} metric rows)")

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


def _metrics_table(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in METRICS_SCHEMA}
    extra = sorted({k for r in rows for k in r} - set(cols))
    schema = METRICS_SCHEMA
    for k in extra:  # group axes beyond the cell axes (a study grouping by answer_kind, ...)
        cols[k] = [None if r.get(k) is None else str(r.get(k)) for r in rows]
        schema = schema.append(pa.field(k, pa.string()))
    return pa.table(cols, schema=schema)
