"""The template context: everything a report template sees (documented in
``templates/README.md``).  Templates get plain data (dicts, lists, strings, numbers, None,
never NaN), not the typed plan."""

from __future__ import annotations

from collections import OrderedDict

import pandas as pd

from xlspec.plan import Plan

from ..metrics.columns import answered_rows
from ..metrics.compute import with_model_attributes
from ..metrics.registry import METRICS
from . import findings
from .charts import study_charts
from .common import column_values
from .compute import N_BOOT, compute_rows, headline, pooled


def _study_frames(results: pd.DataFrame, plan: Plan) -> "OrderedDict[str, pd.DataFrame]":
    """The result rows of each study (of its cells), plan order."""
    by_study: dict[str, set] = {}
    for c in plan.cells:
        by_study.setdefault(c.study, set()).add(c.id)
    out: OrderedDict[str, pd.DataFrame] = OrderedDict()
    for name in plan.studies:
        ids = by_study.get(name, set())
        out[name] = results[results["cell_id"].isin(ids)].reset_index(drop=True)
    return out


def _leak_threshold(metrics) -> float:
    """The probability from which a refusal's top option counts as leaked: the study's
    ``logit_leakage`` threshold, else that metric's default."""
    declared = next((m for m in metrics if m.name == "logit_leakage"), None)
    if declared is not None and declared.args.get("threshold") is not None:
        return float(declared.args["threshold"])
    return float(next(p.default for p in METRICS["logit_leakage"].params if p.name == "threshold"))


def render_context(results: pd.DataFrame, plan: Plan, manifest: dict | None = None, warnings: list[str] | None = None, n_boot: int = N_BOOT) -> dict:
    """Everything a report template sees (``templates/README.md``, "The context"):
    ``results`` is the run's results table, ``manifest`` its ``manifest.json``;
    ``warnings`` collects what could not be computed."""
    manifest = manifest or {}
    warnings = [] if warnings is None else warnings
    attributes = {name: dict(m.attributes) for name, m in plan.models.items() if getattr(m, "attributes", None)}
    frames = {k: with_model_attributes(v, attributes) for k, v in _study_frames(results, plan).items()}
    every_study = pd.concat(list(frames.values()), ignore_index=True) if frames else results
    names = plan.names.get("languages") or {}

    all_rows: list[dict] = []
    studies, summary, tables, pivots, samples, refusals = [], [], [], [], [], []
    charts: OrderedDict[str, object] = OrderedDict()
    samples_total = refusals_total = unparsable_total = 0
    samples_items: set = set()
    for sname, study in plan.studies.items():
        df = frames[sname]
        metrics = list(study.metrics)
        group_by = list(study.group_by)
        axes = study.axes
        where = f"study {sname}"
        rows = [{"study": sname, **r} for r in compute_rows(df, metrics, group_by, warnings, where, n_boot)]
        all_rows.extend(rows)
        head = headline(metrics)
        studies.append(
            {
                "name": sname,
                "axes": axes,
                "group_by": group_by,
                "metrics": [m.label for m in metrics],
                "cells": study.cells,
                "rows": int(len(df)),
                "models": column_values(df, "model", axes.get("model")),
                "languages": column_values(df, "language", axes.get("language")),
                "framings": column_values(df, "framing", axes.get("framing")),
                "headline": head.label if head else None,
            }
        )
        if len(df) == 0:
            continue
        pool = pooled(df, metrics, head, rows, group_by, warnings, where, n_boot)
        found = findings.summary(sname, df, head, pool, names, axes)
        tables.extend(findings.metric_tables(sname, metrics, rows))
        pivots.extend(findings.pivots(sname, rows, axes))
        mine = study_charts(sname, df, head, pool, len(charts), axes)
        # the headline chart goes beside the headline findings, at the top of the page
        found["chart"] = next((name for name in mine if head is not None and name.endswith("per language (95% CI)")), None)
        summary.append(found)
        charts.update(mine)
        flips, n_flips, flip_items = findings.flipped(sname, df)
        samples.extend(flips)
        samples_total += n_flips
        samples_items |= flip_items
        refs, n_refs = findings.refusals(sname, df, _leak_threshold(metrics), every_study)
        refusals.extend(refs)
        refusals_total += n_refs
        if "unparsable" in df.columns:
            unparsable_total += int(answered_rows(df)["unparsable"].fillna(False).astype(bool).sum())

    models = []
    for name, m in plan.models.items():
        run_m = (manifest.get("models") or {}).get(name, {})
        models.append({"name": name, "source": m.source, "engine": run_m.get("engine") or m.engine})
    return {
        "experiment": plan.experiment,
        "title": plan.title,
        "plan": plan.header,
        "plan_hash": manifest.get("plan_hash") or plan.hash(),
        "versions": manifest.get("versions") or plan.versions or {},
        "run": manifest,
        "models": models,
        "language_names": names,
        "studies": studies,
        "metrics": all_rows,
        "summary": summary,
        "tables": tables,
        "pivots": pivots,
        "charts": charts,
        "samples": samples,
        "samples_total": samples_total,
        "samples_items": len(samples_items),
        "refusals": refusals,
        "refusals_total": refusals_total,
        "unparsable_total": unparsable_total,
        "warnings": warnings,
    }
