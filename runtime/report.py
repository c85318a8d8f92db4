"""Metrics and reports of a run: ``metrics.parquet``, then every report template of the plan.

``build_reports(run_dir, plan)`` reads ``<run_dir>/results.parquet`` (one row per request,
``runtime/schema.py``), computes every study's metrics with
``xlspec.runtime.metrics.compute_metrics`` on the rows of the study's cells, writes
``<run_dir>/metrics.parquet`` (atomically) and renders each report of the plan
(``plan["reports"]``; both built-ins when it has none) into ``<run_dir>/report.<ext>``.

Templates
---------
``report.html.j2`` and ``report.md.j2`` are built in (``templates/``); any other template name
is a path relative to the spec file (``plan["spec"]["path"]`` is relative to the plan file,
whose path is ``plan_path`` or the manifest's ``"plan"``, relative to the run folder).  The
output is named after the template's extension: ``x.html.j2`` -> ``report.html``; a second
report with an extension already written goes to ``report-<name>.<ext>``.  Templates run in
Jinja's ``SandboxedEnvironment`` (a template cannot reach Python internals) with
``StrictUndefined`` (a typo is an error, not an empty string) and autoescaping for
``.html``/``.htm``/``.xml``/``.svg`` outputs: model outputs are untrusted text.

Template context (also in ``templates/README.md``)
--------------------------------------------------
Numbers are floats or ``None`` (never NaN); a *stat* is a dict with ``value``, ``ci_low``,
``ci_high`` (95% bootstrap interval) and ``n`` (items behind the value).

- ``experiment`` (str), ``title`` (str or None).
- ``plan``: the plan header (the plan without its ``cells``).
- ``plan_hash``: the plan's identity (the manifest's, else computed).
- ``versions``: the manifest's versions (xlspec, python, torch, ...), else the plan's.
- ``run``: the run's ``manifest.json`` as a dict (``{}`` when there is none): ``status``,
  ``rows``, ``limit``, ``models`` (engine, source, cells, requests, ...), ``timings``.
- ``models``: list of ``{"name", "source", "engine"}`` (plan order).
- ``language_names``: language code -> name in that language (from the plan).
- ``studies``: list of ``{"name", "axes", "group_by", "metrics" (labels), "cells",
  "rows" (result rows of the study), "models", "languages", "framings", "headline"
  (label of the headline metric or None)}``.
- ``metrics``: every row of ``metrics.parquet`` as a dict: ``study, metric, model, dataset,
  country, language, framing, mode, partition, subset, shots, seed, value, ci_low, ci_high,
  n`` (axes a metric does not group by are None).
- ``summary``: per study ``{"study", "headline", "findings", "tables"}``: ``findings`` are
  plain sentences per model (the headline metric overall, its best and worst language and
  the parity gap, per framing, and the share of items answered the same in every language /
  under every framing); ``tables`` hold the headline metric and the declared consistency
  metrics pooled by language and by framing, one column per model (each also has
  ``metric`` and ``axis``).  A newcomer sees at a glance how accuracy and consistency move
  with language and framing.
- ``tables``: per study and metric ``{"study", "metric", "title", "note", "columns",
  "rows"}``: the metric's rows (``note`` names the axes that are the same on every row).
- ``pivots``: per study, metric and model ``{"study", "metric", "model", "framings",
  "title", "note", "columns", "rows"}``: languages (rows, with any other varying axis in
  front) x framings (columns).
- Every *table* above (``summary[].tables[]``, ``tables[]``, ``pivots[]``) has ``columns``
  (header strings) and ``rows`` (lists of cells); a cell is a string, a number, None, or a
  stat (a mapping: test with ``cell is mapping``).
- ``charts``: an ordered dict of caption -> inline ``<svg>`` (a ``markupsafe.Markup``, made
  here with matplotlib, without prolog, metadata, external references or fetched fonts;
  element ids prefixed per chart): per study a language x framing heatmap of every
  per-item metric (a panel per model), bars of the headline metric per language with 95%
  CI error bars (a bar per model), and the parity gap per model (a bar per framing).
- ``samples``: flipped items, ``{"study", "item_id", "model", "framing", "mode", "context"
  (other axes, "k=v, ..."), "gold", "answers": [{"language", "answer", "correct" (equals
  gold; None without gold), "response"}]}``:
  same item and every other axis, a different answer in another language (the preferred
  answer kind, as the metrics use: generate, else options, else loglik; a refusal reads
  "(refused)").  At most ``MAX_SAMPLES`` per study; ``samples_total`` counts them all.
- ``refusals``: refused generated answers ``{"study", "item_id", "model", "language",
  "framing", "mode", "context", "response", "gold", "leaked" (argmax of the option
  probabilities of the options/loglik row of the same item and axes, or None), "p" (its
  probability), "leaks" (p >= threshold), "threshold"}``.  At most ``MAX_REFUSALS`` per
  study; ``refusals_total`` counts them all.
- ``warnings``: list of strings (metrics that could not be computed, ...).

Filters: ``num`` (3 decimals, "—" for None), ``ci`` (``[lo, hi]`` of a stat, "" without),
``stat`` (``value [lo, hi]``), ``pct`` (a share as a percentage), ``md`` (untrusted text
for a Markdown table cell: Markdown and HTML escaped), ``mdtext`` (our own labels for
Markdown: pipes, angle brackets and emphasis escaped), ``excerpt(n)`` (one line, at most n
characters).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import uuid
import warnings as _warnings
from collections import OrderedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .store import atomic_write_table


__all__ = ["build_reports", "METRICS_SCHEMA", "BUILTIN_TEMPLATES", "render_context"]

AXIS_COLUMNS = ("model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "shots", "seed")
INT_AXES = ("shots", "seed")
METRICS_SCHEMA = pa.schema(
    [("study", pa.string()), ("metric", pa.string())]
    + [(a, pa.int32() if a in INT_AXES else pa.string()) for a in AXIS_COLUMNS]
    + [("value", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("n", pa.int64())]
)
"""``metrics.parquet``: one row per (study, metric, group)."""

BUILTIN_TEMPLATES = ("report.html.j2", "report.md.j2")
ESCAPED_EXTENSIONS = ("html", "htm", "xml", "svg")
HEADLINE_ORDER = ("accuracy", "exact_match", "agreement", "token_f1", "chrf", "language_fidelity", "kl", "js")
SHARE_METRICS = frozenset({"accuracy", "exact_match", "agreement", "token_f1", "refusal_rate", "logit_leakage", "language_fidelity", "consistency"})
CHOICE_RANK = {"generate": 0, "options": 1, "loglik": 2}
MAX_SAMPLES = 100
MAX_REFUSALS = 100
RESPONSE_CHARS = 300
SEED = 0
N_BOOT = 1000


# ----------------------------------------------------------------------------- entry point


def build_reports(run_dir: str, plan: dict, plan_path: str | None = None, n_boot: int = N_BOOT) -> list[str]:
    """Compute ``metrics.parquet`` and render every report of ``plan`` for the run in
    ``run_dir``.  Returns the lines to print (``wrote <path>``, warnings)."""
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

    reports = plan.get("reports") or [{"name": "html", "template": "report.html.j2"}, {"name": "markdown", "template": "report.md.j2"}]
    written: set[str] = set()
    for rep in reports:
        template = rep["template"]
        ext = _output_extension(template)
        name = f"report.{ext}"
        if name in written:
            name = f"report-{_safe_name(rep.get('name') or 'report')}.{ext}"
        try:
            text = _render(template, ext, ctx, plan, plan_path)
        except Exception as e:  # a broken user template must not lose the other reports
            msg = f"report {rep.get('name')!r} ({template}): {type(e).__name__}: {e}"
            warnings.append(msg)
            lines.append(f"error: {msg}")
            continue
        out = os.path.join(run_dir, name)
        _atomic_write_text(text, out)
        written.add(name)
        lines.append(f"wrote {out}")
    lines.extend(f"warning: {w}" for w in warnings if not any(w in ln for ln in lines))
    return lines


# ----------------------------------------------------------------------------- I/O helpers


def _read_manifest(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _load_results(path: str, plan: dict) -> pd.DataFrame:
    df = pq.read_table(path).to_pandas()
    # Axes the results table does not carry (the seed) come from the plan's cells.
    axes = {c["id"]: c.get("axes", {}) for c in plan.get("cells", [])}
    for a in AXIS_COLUMNS:
        if a not in df.columns:
            df[a] = df["cell_id"].map(lambda cid, a=a: axes.get(cid, {}).get(a)).astype(object) if len(df) else pd.Series([], dtype=object)
    return df


def _atomic_write_text(text: str, path: str) -> None:
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _metrics_table(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in METRICS_SCHEMA}
    extra = sorted({k for r in rows for k in r} - set(cols))
    schema = METRICS_SCHEMA
    for k in extra:  # group axes beyond the cell axes (a study grouping by answer_kind, ...)
        cols[k] = [None if r.get(k) is None else str(r.get(k)) for r in rows]
        schema = schema.append(pa.field(k, pa.string()))
    return pa.table(cols, schema=schema)


# ----------------------------------------------------------------------------- small helpers


def _missing(x) -> bool:
    if x is None or x is pd.NA:
        return True
    try:
        return isinstance(x, float) and math.isnan(x)
    except TypeError:  # pragma: no cover
        return False


def _clean(x):
    """A value for a template / Parquet: numpy scalars to Python, NaN to None."""
    if _missing(x):
        return None
    if isinstance(x, np.generic):
        x = x.item()
        if isinstance(x, float) and math.isnan(x):
            return None
    return x


def _str(x) -> str | None:
    x = _clean(x)
    return None if x is None else str(x)


def _num(x) -> str:
    x = _clean(x)
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


def _ci(c) -> str:
    if not isinstance(c, dict) or _clean(c.get("ci_low")) is None or _clean(c.get("ci_high")) is None:
        return ""
    return f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]"


def _stat(c) -> str:
    if not isinstance(c, dict):
        return _num(c) if isinstance(c, (int, float)) or c is None else str(c)
    ci = _ci(c)
    return _num(c.get("value")) + (f" {ci}" if ci else "")


def _pct(x) -> str:
    x = _clean(x)
    return "—" if x is None else f"{100 * float(x):.1f}%"


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>#|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_MD_TEXT = re.compile(r"([`*<>|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def _md(text) -> str:
    """Untrusted text (model outputs, item ids, answers) for a Markdown table cell: one
    line; Markdown and HTML characters backslash-escaped, so a pull-request comment shows
    ``<script>`` or ``[x](y)`` as text.  ``None`` -> "—"."""
    if text is None:
        return "—"
    s = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", s)


def _mdtext(text) -> str:
    """Our own text (labels, findings, notes) for Markdown: one line, table pipes, HTML
    brackets and emphasis escaped; brackets and parentheses kept readable."""
    if text is None:
        return "—"
    s = " ".join(str(text).split())
    return _MD_TEXT.sub(r"\\\1", s)


def _excerpt(text, n: int = 120) -> str:
    if text is None:
        return ""
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "report"


def _output_extension(template: str) -> str:
    base = os.path.basename(template)
    if base.endswith(".j2"):
        base = base[:-3]
    elif base.endswith(".jinja"):
        base = base[:-6]
    ext = base.rsplit(".", 1)[1] if "." in base else "txt"
    return _safe_name(ext.lower())


def _stat_of(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: row.get(k) for k in ("value", "ci_low", "ci_high", "n")}


def _sort_key(v):
    return (v is None, str(v) if v is not None else "")


# ----------------------------------------------------------------------------- metrics


def _compute(results: pd.DataFrame, metrics: list[dict], group_by: list[str], warnings: list[str], where: str, n_boot: int) -> list[dict]:
    """compute_metrics as row dicts; on a failure, metric by metric so one bad metric does
    not hide the others (its failure becomes a warning)."""
    from .metrics import compute_metrics

    group_by = [g for g in group_by if g in results.columns]
    if not metrics or len(results) == 0:
        return []
    try:
        frame = compute_metrics(results, metrics, group_by, seed=SEED, n_boot=n_boot)
    except Exception:
        frames = []
        for m in metrics:
            try:
                frames.append(compute_metrics(results, [m], group_by, seed=SEED, n_boot=n_boot))
            except Exception as e:
                warnings.append(f"{where}: metric {m.get('label') or m.get('name')!r} could not be computed: {e}")
        if not frames:
            return []
        frame = pd.concat(frames, ignore_index=True)
    rows = []
    for rec in frame.to_dict("records"):
        row = {k: _clean(v) for k, v in rec.items()}
        for a in INT_AXES:
            if row.get(a) is not None:
                try:
                    row[a] = int(row[a])
                except (TypeError, ValueError):
                    pass
        rows.append(row)
    return rows


def _headline(metrics: list[dict]) -> dict | None:
    plain = [m for m in metrics if not (m.get("args") or {}).get("pair") and m.get("by") is None]
    for name in HEADLINE_ORDER:
        for m in plain:
            if m["name"] == name:
                return m
    return None


def _label(m: dict) -> str:
    return m.get("label") or m["name"]


def _study_frames(results: pd.DataFrame, plan: dict) -> "OrderedDict[str, pd.DataFrame]":
    by_study: dict[str, set] = {}
    for c in plan.get("cells", []):
        by_study.setdefault(c.get("study"), set()).add(c["id"])
    out: OrderedDict[str, pd.DataFrame] = OrderedDict()
    for name in plan.get("studies", {}):
        ids = by_study.get(name, set())
        out[name] = results[results["cell_id"].isin(ids)].reset_index(drop=True)
    return out


def _values(df: pd.DataFrame, col: str, order=None) -> list:
    """The distinct values of a column: in ``order`` (the study's axis, plan order) first,
    then any others sorted."""
    if col not in df.columns or len(df) == 0:
        return []
    return _ordered({_clean(v) for v in df[col].tolist()}, order)


def _ordered(values, order=None) -> list:
    values = set(values)
    first = [v for v in (order or []) if v in values]
    return first + sorted(values - set(first), key=_sort_key)


# ----------------------------------------------------------------------------- the context


def render_context(results: pd.DataFrame, plan: dict, manifest: dict | None = None, warnings: list[str] | None = None, n_boot: int = N_BOOT) -> dict:
    """Everything a report template sees (see the module docstring)."""
    manifest = manifest or {}
    warnings = [] if warnings is None else warnings
    header = {k: v for k, v in plan.items() if k != "cells"}
    frames = _study_frames(results, plan)
    every_study = pd.concat(list(frames.values()), ignore_index=True) if frames else results
    names = (plan.get("names") or {}).get("languages") or {}

    all_rows: list[dict] = []
    studies, summary, tables, pivots, samples, refusals = [], [], [], [], [], []
    charts: OrderedDict[str, object] = OrderedDict()
    samples_total = refusals_total = 0
    for sname, study in plan.get("studies", {}).items():
        df = frames[sname]
        metrics = list(study.get("metrics") or [])
        group_by = list(study.get("group_by") or [])
        axes = study.get("axes") or {}
        where = f"study {sname}"
        rows = [{"study": sname, **r} for r in _compute(df, metrics, group_by, warnings, where, n_boot)]
        all_rows.extend(rows)
        head = _headline(metrics)
        studies.append(
            {
                "name": sname,
                "axes": study.get("axes", {}),
                "group_by": group_by,
                "metrics": [_label(m) for m in metrics],
                "cells": study.get("cells"),
                "rows": int(len(df)),
                "models": _values(df, "model", axes.get("model")),
                "languages": _values(df, "language", axes.get("language")),
                "framings": _values(df, "framing", axes.get("framing")),
                "headline": _label(head) if head else None,
            }
        )
        if len(df) == 0:
            continue
        pooled = _pooled(df, metrics, head, rows, group_by, warnings, where, n_boot)
        summary.append(_summary(sname, df, metrics, head, pooled, names, axes))
        tables.extend(_metric_tables(sname, metrics, rows))
        pivots.extend(_pivots(sname, metrics, rows, axes))
        charts.update(_study_charts(sname, df, metrics, head, pooled, len(charts), axes))
        flips, n_flips = _flipped(sname, df)
        samples.extend(flips)
        samples_total += n_flips
        thr = next((float((m.get("args") or {}).get("threshold", 0.5)) for m in metrics if m["name"] == "logit_leakage"), 0.5)
        refs, n_refs = _refusals(sname, df, thr, every_study)
        refusals.extend(refs)
        refusals_total += n_refs

    models = []
    for name, m in (plan.get("models") or {}).items():
        run_m = (manifest.get("models") or {}).get(name, {})
        models.append({"name": name, "source": m.get("source"), "engine": run_m.get("engine") or m.get("engine")})
    plan_hash = manifest.get("plan_hash")
    if not plan_hash:
        try:
            from xlspec.plan import plan_hash as _ph

            plan_hash = _ph(plan)
        except Exception:  # pragma: no cover - a plan dict the compiler does not know
            plan_hash = None
    return {
        "experiment": plan.get("experiment"),
        "title": plan.get("title"),
        "plan": header,
        "plan_hash": plan_hash,
        "versions": manifest.get("versions") or plan.get("versions") or {},
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
        "refusals": refusals,
        "refusals_total": refusals_total,
        "warnings": warnings,
    }


def _folded(m: dict) -> set:
    """Axes a metric folds away (its rows never carry them)."""
    args = m.get("args") or {}
    if m["name"] == "consistency":
        return {args.get("over")}
    if m["name"] in ("parity_gap", "parity_std"):
        return {"language"}
    pair = args.get("pair")
    if isinstance(pair, dict) and "axis" in pair:
        return {pair["axis"]} | ({"model"} if m["name"] == "rank_stability" else set())
    return set()


def _pooled(df, metrics, head, study_rows, group_by, warnings, where, n_boot) -> dict:
    """The headline metric (and the declared consistency and parity metrics) pooled over
    the axes a newcomer does not need at first: per model, per model x language, per model
    x framing, per model x language x framing.  Where the study's own grouping already is
    that grouping (its other axes hold one value), its rows are reused."""
    out: dict = {"head": None, "cons": [], "parity": None}
    cons = [{**m, "by": None} for m in metrics if m["name"] == "consistency" and m.get("by") is None]
    out["cons"] = cons
    specs: list[dict] = []
    if head is not None:
        head = {**head, "by": None}
        out["head"] = head
        specs.append(head)
        parity = next((m for m in metrics if m["name"] == "parity_gap" and m.get("by") is None and (m.get("args") or {}).get("metric") in (head["name"], _label(head))), None)
        if parity is None:
            parity = {"name": "parity_gap", "args": {"metric": _label(head)}, "label": f"parity_gap(metric={_label(head)})"}
        out["parity"] = {**parity, "by": None}
    item_metrics = [
        {**m, "by": None}
        for m in metrics
        if m["name"] in _item_metric_names() and not (m.get("args") or {}).get("pair") and m.get("by") is None and (head is None or _label(m) != _label(head))
    ]
    out["items"] = ([out["head"]] if head is not None else []) + item_metrics

    const = {a for a in group_by if a in df.columns and df[a].nunique(dropna=False) <= 1}
    declared = {_label(m): m for m in metrics if m.get("by") is None}

    def rows(specs_, by):
        by = [a for a in by if a in df.columns]
        reused, todo = [], []
        for sp in specs_:
            m = declared.get(_label(sp))
            fold = _folded(sp)
            same = (
                m is not None
                and m["name"] == sp["name"]
                and (m.get("args") or {}) == (sp.get("args") or {})
                and set(by) - fold <= set(group_by)
                and set(group_by) - fold - const == set(by) - fold - const
            )
            if same:
                reused.extend(r for r in study_rows if r["metric"] == _label(sp) or r["metric"].startswith(_label(sp) + "."))
            else:
                todo.append(sp)
        if todo:
            # a metric that names another by label needs that one in the same request
            needed = {_label(t) for t in todo}
            for t in list(todo):
                ref = (t.get("args") or {}).get("metric")
                if ref is not None and ref not in needed:
                    extra = next((x for x in specs_ if _label(x) == ref or x["name"] == ref), None)
                    if extra is not None:
                        todo.insert(0, extra)
                        needed.add(_label(extra))
            computed = _compute(df, todo, by, warnings, f"{where} (summary)", n_boot)
            have = {r["metric"] for r in reused}
            reused.extend(r for r in computed if r["metric"] not in have)
        return reused

    cons_not = lambda axis: [m for m in cons if (m.get("args") or {}).get("over") != axis]  # noqa: E731
    parity = [out["parity"]] if out["parity"] else []
    out["model"] = rows(specs + parity + cons, ["model"])
    out["model_language"] = rows(specs + cons_not("language"), ["model", "language"])
    out["model_framing"] = rows(specs + parity + cons_not("framing"), ["model", "framing"])
    out["parity_framing"] = out["model_framing"]
    out["model_language_framing"] = rows(out["items"], ["model", "language", "framing"])
    return out


def _item_metric_names():
    try:
        from xlspec.metric_catalog import ITEM_METRICS

        return ITEM_METRICS
    except ImportError:  # pragma: no cover
        return frozenset(HEADLINE_ORDER) | {"refusal_rate", "logit_leakage"}


def _find(rows: list[dict], label: str, **axes) -> dict | None:
    for r in rows:
        if r.get("metric") == label and all(r.get(k) == v for k, v in axes.items()):
            return r
    return None


def _isolate(text: str) -> str:
    """Right-to-left text inside a left-to-right sentence, isolated (U+2068 ... U+2069) so
    the numbers around it keep their order."""
    import unicodedata

    if any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text):
        return f"\u2068{text}\u2069"
    return text


def _lang_label(code, names: dict) -> str:
    if code is None:
        return "—"
    name = names.get(code)
    return f"{code} ({_isolate(name)})" if name and name != code else str(code)


def _summary(sname, df, metrics, head, pooled, names, axes) -> dict:
    models = _values(df, "model", axes.get("model"))
    languages = _values(df, "language", axes.get("language"))
    framings = _values(df, "framing", axes.get("framing"))
    cons = pooled["cons"]
    cons_lang = next((m for m in cons if (m.get("args") or {}).get("over") == "language"), None)
    cons_fram = next((m for m in cons if (m.get("args") or {}).get("over") == "framing"), None)
    hl = _label(head) if head else None
    findings: list[str] = []
    tables: list[dict] = []

    for model in models:
        sentences = []
        if hl:
            overall = _find(pooled["model"], hl, model=model)
            if overall is not None and overall.get("value") is not None:
                sentences.append(f"{model}: {hl} {_stat(overall)} over {overall['n']} items.")
            else:
                sentences.append(f"{model}: no {hl} value.")
            per_lang = [(lang, _find(pooled["model_language"], hl, model=model, language=lang)) for lang in languages]
            per_lang = [(lang, r) for lang, r in per_lang if r is not None and r.get("value") is not None]
            if len(per_lang) >= 2:
                best = max(per_lang, key=lambda t: t[1]["value"])
                worst = min(per_lang, key=lambda t: t[1]["value"])
                text = f"Highest in {_lang_label(best[0], names)} {_stat(best[1])}, lowest in {_lang_label(worst[0], names)} {_stat(worst[1])}"
                gap = _find(pooled["model"], _label(pooled["parity"]), model=model) if pooled["parity"] else None
                if gap is not None and gap.get("value") is not None:
                    text += f": a gap of {_stat(gap)}"
                sentences.append(text + ".")
            per_fr = [(fr, _find(pooled["model_framing"], hl, model=model, framing=fr)) for fr in framings]
            per_fr = [(fr, r) for fr, r in per_fr if r is not None and r.get("value") is not None]
            if len(per_fr) >= 2:
                sentences.append("By framing: " + ", ".join(f"{fr} {_stat(r)}" for fr, r in per_fr) + ".")
        same = []
        for m, what in ((cons_lang, "in every language"), (cons_fram, "under every framing")):
            r = _find(pooled["model"], _label(m), model=model) if m is not None else None
            if r is not None and r.get("value") is not None:
                ci = f" [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]" if r.get("ci_low") is not None and r.get("ci_high") is not None else ""
                same.append(f"{what} for {_pct(r['value'])} of items{ci}")
        if same:
            prefix = "" if hl else f"{model}: "
            sentences.append(f"{prefix}The same answer " + ", and ".join(same) + ".")
        if sentences:
            findings.append(" ".join(sentences))

    # One small table per (axis, metric): the axis' values down, the models across.
    for axis, values, label_of, pooled_rows, metric, note in (
        ("language", languages, lambda v: _lang_label(v, names), pooled["model_language"], hl, "pooled over framings and every other axis"),
        ("framing", framings, lambda v: "—" if v is None else str(v), pooled["model_framing"], hl, "pooled over languages and every other axis"),
        ("language", languages, lambda v: _lang_label(v, names), pooled["model_language"], _label(cons_fram) if cons_fram else None, "share of items with the same answer under every framing"),
        ("framing", framings, lambda v: "—" if v is None else str(v), pooled["model_framing"], _label(cons_lang) if cons_lang else None, "share of items with the same answer in every language"),
    ):
        if metric is None or len(values) < 2 and axis == "framing":
            continue
        trows = [[label_of(v)] + [_stat_of(_find(pooled_rows, metric, model=model, **{axis: v})) for model in models] for v in values]
        if any(c is not None for row in trows for c in row[1:]):
            tables.append({"title": f"{metric} by {axis}", "metric": metric, "axis": axis, "note": note, "columns": [axis] + [str(m) for m in models], "rows": trows})
    return {"study": sname, "headline": hl, "findings": findings, "tables": tables}


def _metric_tables(sname, metrics, rows) -> list[dict]:
    out = []
    labels = []
    for m in metrics:
        lbl = _label(m)
        labels.extend([lbl] if not any(r["metric"].startswith(lbl + ".") for r in rows) else sorted({r["metric"] for r in rows if r["metric"].startswith(lbl + ".")}))
    for lbl in labels:
        mrows = [r for r in rows if r["metric"] == lbl]
        if not mrows:
            continue
        varying, constant = [], []
        for a in AXIS_COLUMNS + tuple(k for k in mrows[0] if k not in AXIS_COLUMNS and k not in ("study", "metric", "value", "ci_low", "ci_high", "n")):
            vals = {r.get(a) for r in mrows}
            if vals == {None}:
                continue
            (varying if len(vals) > 1 else constant).append(a)
        note = ", ".join(f"{a} = {mrows[0][a]}" for a in constant) or None
        columns = varying + [lbl, "n"]
        trows = [[("—" if r.get(a) is None else str(r.get(a))) for a in varying] + [_stat_of(r), r.get("n")] for r in mrows]
        out.append({"study": sname, "metric": lbl, "title": lbl, "note": note, "columns": columns, "rows": trows})
    return out


def _pivots(sname, metrics, rows, axes) -> list[dict]:
    out = []
    for lbl in dict.fromkeys(r["metric"] for r in rows):
        mrows = [r for r in rows if r["metric"] == lbl and r.get("language") is not None]
        if not mrows:
            continue
        framings = _ordered({r.get("framing") for r in mrows}, axes.get("framing"))
        lang_rank = {v: i for i, v in enumerate(_ordered({r.get("language") for r in mrows}, axes.get("language")))}
        for model in _ordered({r.get("model") for r in mrows}, axes.get("model")):
            sub = [r for r in mrows if r.get("model") == model]
            others = [a for a in AXIS_COLUMNS if a not in ("model", "language", "framing") and len({r.get(a) for r in sub}) > 1]
            constant = [a for a in AXIS_COLUMNS if a not in ("model", "language", "framing") and a not in others and {r.get(a) for r in sub} != {None}]
            keys = sorted({tuple(r.get(a) for a in others) + (r.get("language"),) for r in sub}, key=lambda t: tuple(_sort_key(v) for v in t[:-1]) + (lang_rank[t[-1]],))
            cell = {(tuple(r.get(a) for a in others) + (r.get("language"),), r.get("framing")): r for r in sub}
            trows = [[("—" if v is None else str(v)) for v in key] + [_stat_of(cell.get((key, fr))) for fr in framings] for key in keys]
            columns = others + ["language"] + [("all framings" if fr is None else str(fr)) for fr in framings]
            note = ", ".join(f"{a} = {sub[0][a]}" for a in constant) or None
            out.append({"study": sname, "metric": lbl, "model": model, "framings": framings, "title": f"{lbl} · {model}", "note": note, "columns": columns, "rows": trows})
    return out


# ----------------------------------------------------------------------------- answers


def _map_items(x) -> list[tuple[str, float]]:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return []
    if isinstance(x, dict):
        return [(str(k), float(v)) for k, v in x.items() if not _missing(v)]
    out = []
    try:
        for kv in x:
            k, v = (kv["key"], kv["value"]) if isinstance(kv, dict) else kv
            if not _missing(v):
                out.append((str(k), float(v)))
    except (TypeError, ValueError, KeyError):
        return []
    return out


def _top_option(x) -> tuple[str | None, float | None]:
    items = [(k, max(v, 0.0)) for k, v in _map_items(x)]
    total = sum(v for _, v in items)
    if not items or total <= 0:
        return None, None
    best = max(range(len(items)), key=lambda i: (items[i][1], -i))
    return items[best][0], items[best][1] / total


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "error" in df.columns:
        err = df["error"]
        keep = err.isna().to_numpy() | err.astype(object).map(lambda e: e is None or str(e).strip() == "").to_numpy()
        df = df[keep]
    return df


def _context_text(row, axes) -> str:
    return ", ".join(f"{a}={row[a]}" for a in axes if not _missing(row.get(a)))


def _flipped(sname: str, df: pd.DataFrame) -> tuple[list[dict], int]:
    """Items whose answer differs between languages, every other axis equal."""
    df = _ok_rows(df)
    if len(df) == 0 or "language" not in df.columns:
        return [], 0
    kind = df["answer_kind"].astype(object).where(df["answer_kind"].notna(), "generate") if "answer_kind" in df.columns else pd.Series("generate", index=df.index)
    rank = kind.map(lambda k: CHOICE_RANK.get(k, -1))
    df = df.assign(_rank=rank.to_numpy())
    df = df[df["_rank"] >= 0]
    unit_axes = [a for a in ("item_id", "model", "dataset", "country", "framing", "mode", "partition", "subset", "shots", "seed", "sample") if a in df.columns]
    best = df.groupby(unit_axes, dropna=False, sort=False)["_rank"].transform("min")
    df = df[df["_rank"].to_numpy() == best.to_numpy()].copy()
    from .metrics import normalize_label

    def answer(row) -> tuple[str, str]:
        if row.get("_k") == "generate" and bool(row.get("refused")) and not _missing(row.get("refused")):
            return "(refused)", "\x00refused"
        a = row.get("parsed_answer")
        if _missing(a) and row.get("_k") in ("options", "loglik"):
            a = _top_option(row.get("option_probs"))[0]
        if _missing(a):
            return "(none)", "\x00none"
        return str(a), normalize_label(a)

    df["_k"] = kind.loc[df.index].to_numpy()
    shown = [answer(r) for r in df[["_k", "refused", "parsed_answer", "option_probs"]].to_dict("records")] if len(df) else []
    df["_answer"] = [s for s, _ in shown]
    df["_norm"] = [n for _, n in shown]
    codes = df.groupby(unit_axes, dropna=False, sort=False).ngroup().to_numpy()
    n_langs = pd.Series(df["language"].to_numpy(dtype=object)).groupby(codes).nunique()
    n_answers = pd.Series(df["_norm"].to_numpy(dtype=object)).groupby(codes).nunique()
    flipped = n_langs.index[((n_langs >= 2) & (n_answers >= 2)).to_numpy()].to_numpy()
    total = len(flipped)
    if total == 0:
        return [], 0
    df = df.assign(_code=codes)
    sel = df[np.isin(codes, flipped)]
    context_axes = [a for a in ("dataset", "country", "partition", "subset", "shots", "seed", "sample") if a in df.columns and df[a].nunique(dropna=True) > 1]
    # the first MAX_SAMPLES units in a stable order; only those are materialised
    heads = sel.drop_duplicates("_code")
    order = sorted(
        heads[["_code", "model", "item_id", "framing", "mode"] + context_axes].to_dict("records"),
        key=lambda r: (_sort_key(_str(r["model"])), _sort_key(_str(r["item_id"])), _sort_key(_str(r["framing"])), _sort_key(_str(r["mode"])), _context_text(r, context_axes)),
    )
    chosen = [r["_code"] for r in order[:MAX_SAMPLES]]
    groups = {c: g for c, g in sel[np.isin(sel["_code"].to_numpy(), chosen)].groupby("_code", sort=False)}
    out = []
    for code in chosen:
        grp = groups[code]
        first = grp.iloc[0]
        gold = normalize_label(_str(first.get("gold")))
        answers = [
            {
                "language": _str(r["language"]),
                "answer": r["_answer"],
                "correct": None if gold is None else r["_norm"] == gold,
                "response": _excerpt(r.get("response"), RESPONSE_CHARS) if not _missing(r.get("response")) else None,
            }
            for r in sorted(grp.to_dict("records"), key=lambda r: _sort_key(_clean(r["language"])))
        ]
        out.append(
            {
                "study": sname,
                "item_id": _str(first["item_id"]),
                "model": _str(first.get("model")),
                "framing": _str(first.get("framing")),
                "mode": _str(first.get("mode")),
                "context": _context_text(first, context_axes),
                "gold": _str(first.get("gold")),
                "answers": answers,
            }
        )
    return out, total


def _refusals(sname: str, df: pd.DataFrame, threshold: float, pool: pd.DataFrame) -> tuple[list[dict], int]:
    """Refused generated answers, with the option their log-probabilities preferred.  The
    probabilities come from any study's options row of the same item and axes (``pool``, all
    results): one study may read the options of the prompts another one generates from."""
    df = _ok_rows(df)
    pool = _ok_rows(pool)
    if len(df) == 0 or "refused" not in df.columns:
        return [], 0
    kind = df["answer_kind"].astype(object).where(df["answer_kind"].notna(), "generate") if "answer_kind" in df.columns else pd.Series("generate", index=df.index)
    refused = df["refused"].astype(object).map(lambda x: bool(x) if not _missing(x) else False).to_numpy(dtype=bool)
    gen = df[(kind.to_numpy() == "generate") & refused]
    total = len(gen)
    if total == 0:
        return [], 0
    key_axes = [a for a in ("item_id", "model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "shots", "seed") if a in df.columns and a in pool.columns]
    pool_kind = pool["answer_kind"].astype(object) if "answer_kind" in pool.columns else pd.Series("generate", index=pool.index)
    probs = pool[np.isin(pool_kind.to_numpy(), ("options", "loglik"))]
    if "sample" in probs.columns:
        probs = probs.sort_values("sample", kind="stable", na_position="last")
    prank = probs["answer_kind"].map(lambda k: 0 if k == "options" else 1) if len(probs) else pd.Series([], dtype=int)
    probs = probs.assign(_pr=prank.to_numpy()).sort_values("_pr", kind="stable") if len(probs) else probs
    leak: dict = {}
    for rec in probs[key_axes + ["option_probs"]].to_dict("records") if len(probs) else []:
        k = tuple(_clean(rec[a]) for a in key_axes)
        if k in leak:
            continue
        label, p = _top_option(rec["option_probs"])
        if label is not None:
            leak[k] = (label, p)
    context_axes = [a for a in ("dataset", "country", "partition", "subset", "shots", "seed", "sample") if a in df.columns and df[a].nunique(dropna=True) > 1]
    out = []
    for rec in gen.to_dict("records"):
        label, p = leak.get(tuple(_clean(rec[a]) for a in key_axes), (None, None))
        out.append(
            {
                "study": sname,
                "item_id": _str(rec["item_id"]),
                "model": _str(rec.get("model")),
                "language": _str(rec.get("language")),
                "framing": _str(rec.get("framing")),
                "mode": _str(rec.get("mode")),
                "context": _context_text(rec, context_axes),
                "response": _excerpt(rec.get("response"), RESPONSE_CHARS) if not _missing(rec.get("response")) else None,
                "gold": _str(rec.get("gold")),
                "leaked": label,
                "p": p,
                "leaks": p is not None and p >= threshold,
                "threshold": threshold,
            }
        )
    out.sort(key=lambda r: (not r["leaks"], _sort_key(r["model"]), _sort_key(r["item_id"]), _sort_key(r["language"]), _sort_key(r["framing"]), _sort_key(r["mode"]), r["context"]))
    return out[:MAX_REFUSALS], total


# ----------------------------------------------------------------------------- charts

_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def _svg(fig, index: int):
    """The figure as an inline <svg> element (Markup): no prolog, doctype, metadata or
    namespace URLs; ids prefixed so several charts can share one page."""
    from markupsafe import Markup

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    s = buf.getvalue()
    s = s[s.index("<svg") :]
    s = re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)
    s = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", s)
    prefix = f"xc{index}-"
    s = _SVG_ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', s)
    s = _SVG_REF.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", s)
    s = s.replace("<svg ", '<svg role="img" class="chart" ', 1)
    return Markup(s.strip())


def _rc():
    import matplotlib

    return matplotlib.rc_context(
        {
            "svg.hashsalt": "xlspec-report",
            "svg.fonttype": "none",
            "font.size": 9,
            "font.family": "sans-serif",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "text.usetex": False,
        }
    )


def _txt(s) -> str:
    """Chart text without mathtext: a '$' stays a dollar sign."""
    return "—" if s is None else str(s).replace("$", r"\$")


CHAR_IN = 0.075  # about the width of one 9 pt character, in inches


def _layout(fig, w, h, left, right, bottom, top, wspace=None):
    """Fixed margins in inches (no tight bounding box: it would draw the figure twice)."""
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=wspace)


def _heatmaps(title: str, models, languages, framings, grids: list, share: bool, index: int):
    """One panel per model: languages (rows) x framings (columns), values written in."""
    from matplotlib.figure import Figure

    fr_labels = [_txt(f if f is not None else "all") for f in framings]
    rotate = max((len(x) for x in fr_labels), default=0) > 9 and len(framings) > 1
    cell_w = max(0.55, min(1.1, CHAR_IN * max((len(x) for x in fr_labels), default=4) + 0.15)) if not rotate else 0.55
    panel_w, panel_h = cell_w * max(len(framings), 1), 0.28 * max(len(languages), 1)
    left = 0.2 + CHAR_IN * max((len(_txt(x)) for x in languages), default=2)
    gap = 0.25
    bottom = 0.3 + (CHAR_IN * max(len(x) for x in fr_labels) * 0.7 if rotate else 0)
    top = 0.5
    w = left + len(models) * panel_w + (len(models) - 1) * gap + 0.2
    h = bottom + panel_h + top
    fig = Figure(figsize=(w, h), dpi=72)
    axes = fig.subplots(1, len(models), squeeze=False, sharey=True)[0]
    _layout(fig, w, h, left, 0.2, bottom, top, wspace=gap / panel_w)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.array([])
    vmin, vmax = (0.0, 1.0) if share else ((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
    if vmin == vmax:
        vmax = vmin + 1.0
    for ax, model, values in zip(axes, models, grids):
        ax.set_facecolor("#e5e5e5")
        ax.pcolormesh(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax, edgecolors="white", linewidth=1.0)
        ax.set_xticks(np.arange(len(framings)) + 0.5, fr_labels, rotation=35 if rotate else 0, ha="right" if rotate else "center")
        ax.set_yticks(np.arange(len(languages)) + 0.5, [_txt(x) for x in languages])
        ax.set_ylim(len(languages), 0)
        ax.tick_params(length=0)
        for side in ("left", "bottom", "top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_title(_txt(model), fontsize=9)
        for i in range(len(languages)):
            for j in range(len(framings)):
                v = values[i, j]
                if np.isfinite(v):
                    frac = (v - vmin) / (vmax - vmin)
                    ax.text(j + 0.5, i + 0.5, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if frac > 0.55 else "white")
                else:
                    ax.text(j + 0.5, i + 0.5, "—", ha="center", va="center", fontsize=8, color="#555555")
    fig.suptitle(_txt(title), fontsize=9, x=0.02, y=1 - 0.08 / h, ha="left", va="top")
    return _svg(fig, index)


def _bars(title: str, groups, series, values, lows, highs, ylabel: str, index: int):
    """Grouped bars: x = groups, one bar per series, 95% CI error bars."""
    from matplotlib.figure import Figure

    n_g, n_s = len(groups), max(len(series), 1)
    rotate = n_g > 12 or max((len(_txt(g)) for g in groups), default=0) * n_g > 70
    w = min(12.0, max(3.6, 0.3 * n_g * n_s + 1.6))
    legend = 0.3 if n_s > 1 else 0.0
    bottom = 0.35 + (CHAR_IN * max(len(_txt(g)) for g in groups) if rotate else 0) + legend
    h = 2.3 + bottom
    fig = Figure(figsize=(w, h), dpi=72)
    ax = fig.subplots()
    _layout(fig, w, h, 0.65, 0.15, bottom, 0.35)
    width = 0.8 / n_s
    x = np.arange(n_g)
    colors = ["#3b6ea5", "#e08a2c", "#4b9a5b", "#c0504d", "#8064a2", "#4aacc6", "#9b7b4a", "#777777"]
    for k, s in enumerate(series):
        v = np.array(values[k], dtype=float)
        lo = np.array(lows[k], dtype=float)
        hi = np.array(highs[k], dtype=float)
        err = np.vstack([np.nan_to_num(np.clip(v - lo, 0, None)), np.nan_to_num(np.clip(hi - v, 0, None))])
        ax.bar(x + (k - (n_s - 1) / 2) * width, np.nan_to_num(v), width * 0.92, yerr=err, capsize=2, label=_txt(s), color=colors[k % len(colors)], error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    ax.set_xticks(x, [_txt(g) for g in groups], rotation=90 if rotate else 0)
    ax.set_xlim(-0.6, n_g - 0.4)
    ax.set_ylabel(_txt(ylabel))
    ax.set_title(_txt(title), fontsize=9, loc="left")
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    if n_s > 1:
        fig.legend(fontsize=8, frameon=False, ncols=min(n_s, 4), loc="lower left", bbox_to_anchor=(0.02, 0.0))
    return _svg(fig, index)


def _series(rows_list):
    vals = [[r.get("value") if r.get("value") is not None else np.nan for r in rs] for rs in rows_list]
    lows = [[r.get("ci_low") if r.get("ci_low") is not None else np.nan for r in rs] for rs in rows_list]
    highs = [[r.get("ci_high") if r.get("ci_high") is not None else np.nan for r in rs] for rs in rows_list]
    return vals, lows, highs


def _study_charts(sname, df, metrics, head, pooled, start: int, axes: dict) -> "OrderedDict[str, object]":
    charts: OrderedDict[str, object] = OrderedDict()
    if not pooled.get("items") and head is None:
        return charts
    models = _values(df, "model", axes.get("model"))
    languages = _values(df, "language", axes.get("language"))
    framings = _values(df, "framing", axes.get("framing"))
    with _rc(), _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        # (a) language x framing heatmap of every per-item metric, a panel per model
        for m in pooled.get("items", []):
            lbl = _label(m)
            sub = {(r.get("model"), r.get("language"), r.get("framing")): r.get("value") for r in pooled["model_language_framing"] if r["metric"] == lbl}
            if not sub or all(v is None for v in sub.values()):
                continue
            grids = [np.array([[np.nan if sub.get((model, lang, fr)) is None else sub[(model, lang, fr)] for fr in framings] for lang in languages], dtype=float) for model in models]
            name = f"{sname} · {lbl}: language × framing, per model"
            charts[name] = _heatmaps(lbl, models, languages, framings, grids, m["name"] in SHARE_METRICS, start + len(charts))
        if head is None:
            return charts
        hl = _label(head)
        # (b) the headline metric per language, 95% CI, a bar per model
        vals, lows, highs = _series([[_find(pooled["model_language"], hl, model=model, language=lang) or {} for lang in languages] for model in models])
        if languages and any(np.isfinite(np.array(v, dtype=float)).any() for v in vals):
            name = f"{sname} · {hl} per language (95% CI)"
            charts[name] = _bars(f"{hl} per language, 95% CI", languages, models, vals, lows, highs, hl, start + len(charts))
        # (c) the parity gap (best - worst language) per model, a bar per framing
        parity = pooled.get("parity")
        if parity is not None and len(languages) >= 2:
            plbl = _label(parity)
            if len(framings) > 1:
                series = [f"framing {fr}" for fr in framings]
                src = [[_find(pooled["parity_framing"], plbl, model=model, framing=fr) or {} for model in models] for fr in framings]
            else:
                series = ["all framings"]
                src = [[_find(pooled["model"], plbl, model=model) or {} for model in models]]
            vals, lows, highs = _series(src)
            if any(np.isfinite(np.array(v, dtype=float)).any() for v in vals):
                name = f"{sname} · parity gap of {hl} per model (95% CI)"
                charts[name] = _bars(f"best - worst language ({hl}), 95% CI", models, series, vals, lows, highs, "gap", start + len(charts))
    return charts


# ----------------------------------------------------------------------------- rendering


def _environment(ext: str, loader):
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
    env.filters.update(num=_num, ci=_ci, stat=_stat, pct=_pct, md=_md, mdtext=_mdtext, excerpt=_excerpt)
    return env


def _builtin_dir() -> str:
    from importlib import resources

    return str(resources.files("xlspec.templates"))


def _render(template: str, ext: str, ctx: dict, plan: dict, plan_path: str | None) -> str:
    from jinja2 import ChoiceLoader, FileSystemLoader

    builtin = _builtin_dir()
    if template in BUILTIN_TEMPLATES:
        env = _environment(ext, FileSystemLoader(builtin))
        return env.get_template(template).render(**ctx)
    if plan_path is None:
        raise FileNotFoundError(f"template {template!r} is relative to the spec, but the plan file is unknown (no manifest.json with a 'plan' entry)")
    spec_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(plan_path)), (plan.get("spec") or {}).get("path", ".")))
    path = os.path.normpath(os.path.join(os.path.dirname(spec_path), template))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"template not found: {path}")
    # The user's template may {% extends %} or {% import %} its neighbours or the built-ins.
    env = _environment(ext, ChoiceLoader([FileSystemLoader(os.path.dirname(path)), FileSystemLoader(builtin)]))
    return env.get_template(os.path.basename(path)).render(**ctx)
