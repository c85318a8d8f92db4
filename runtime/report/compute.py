"""The metrics a report shows: every declared metric of a study (``compute_metrics``, one
bad metric becoming a warning instead of hiding the others), the study's headline metric,
and the headline and consistency metrics pooled for the summary.

What a metric is (per item, a share, its headline rank, the axes it folds) is read from the
metric registry (``runtime/metrics/registry.py``), never restated here.
"""

from __future__ import annotations

import pandas as pd

from xlspec.axes import INTEGER_AXES
from xlspec.spec import MetricSpec

from ..metrics.registry import METRICS, folded_axes, metric_label, per_item_metrics
from .common import clean

SEED = 0
"""The bootstrap's seed: the same results give the same intervals."""
N_BOOT = 1000


def compute_rows(results: pd.DataFrame, metrics: list[MetricSpec], group_by: list[str], warnings: list[str], where: str, n_boot: int) -> list[dict]:
    """compute_metrics as row dicts (template-safe values); on a failure, metric by metric
    so one bad metric does not hide the others (its failure becomes a warning)."""
    from ..metrics import compute_metrics

    from ..metrics.compute import with_item_fields

    results = with_item_fields(results, group_by)
    group_by = [g for g in group_by if g in results.columns]
    if not metrics or len(results) == 0:
        return []
    requests = [m.model_dump() for m in metrics]
    try:
        frame = compute_metrics(results, requests, group_by, seed=SEED, n_boot=n_boot)
    except Exception:
        frames = []
        for m, request in zip(metrics, requests):
            try:
                frames.append(compute_metrics(results, [request], group_by, seed=SEED, n_boot=n_boot))
            except Exception as e:
                warnings.append(f"{where}: metric {m.label!r} could not be computed: {e}")
        if not frames:
            return []
        frame = pd.concat(frames, ignore_index=True)
    rows = []
    for rec in frame.to_dict("records"):
        row = {k: clean(v) for k, v in rec.items()}
        for a in INTEGER_AXES:
            if row.get(a) is not None:
                try:
                    row[a] = int(row[a])
                except (TypeError, ValueError):
                    pass
        rows.append(row)
    return rows


def headline(metrics: list[MetricSpec]) -> MetricSpec | None:
    """The study's main metric: of its plain metrics (no contrast, no grouping of their
    own), the one of the lowest ``headline_rank`` (the first declared among equals)."""
    ranked = []
    for pos, m in enumerate(metrics):
        info = METRICS.get(m.name)
        if info is not None and info.headline_rank is not None and not m.args.get("pair") and m.by is None:
            ranked.append((info.headline_rank, pos, m))
    return min(ranked, key=lambda t: t[:2])[2] if ranked else None


def is_share(m: MetricSpec) -> bool:
    """The metric's values are shares in [0, 1]."""
    info = METRICS.get(m.name)
    return info is not None and info.share


def _tests(df: pd.DataFrame, head: MetricSpec | None) -> dict[str, MetricSpec | None]:
    """What the summary tests per model: for an accuracy headline on items with options, the
    chance level and a one-sided test of no better than chance; for a per-item headline
    over two or more languages, a permutation test of no language effect (which the parity
    gap's interval cannot give: the gap is biased upward)."""
    out: dict[str, MetricSpec | None] = {"chance": None, "above_chance": None, "language_effect": None}
    if head is None:
        return out
    has_options = "n_options" in df.columns and df["n_options"].notna().any() or "option_probs" in df.columns and df["option_probs"].notna().any()
    if head.name == "accuracy" and not head.args and has_options:
        out["chance"] = MetricSpec(name="chance", label="chance")
        out["above_chance"] = MetricSpec(name="above_chance", args={"metric": head.label}, label=metric_label("above_chance", {"metric": head.label}))
    if head.name in per_item_metrics() and "language" in df.columns and df["language"].nunique() >= 2:
        args = {"metric": head.label, "over": "language"}
        out["language_effect"] = MetricSpec(name="axis_effect", args=args, label=metric_label("axis_effect", args))
    return out


def pooled(df: pd.DataFrame, metrics: list[MetricSpec], head: MetricSpec | None, study_rows: list[dict], group_by: list[str], warnings: list[str], where: str, n_boot: int) -> dict:
    """The headline metric (and the declared consistency and parity metrics) pooled over
    the axes a newcomer does not need at first: per model, per model x language, per model
    x framing, per model x language x framing.  Where the study's own grouping already is
    that grouping (its other axes hold one value), its rows are reused.

    Returns ``{"head", "cons", "parity", "items"}`` (metrics: the headline, the declared
    consistency metrics, the parity gap of the headline, every plain per-item metric with
    the headline first), the labels ``"chance"``, ``"above_chance"`` and
    ``"language_effect"`` of the tests the summary reports per model (None where they do
    not apply, :func:`_tests`), and the rows ``"model"``, ``"model_language"``,
    ``"model_framing"`` (also ``"parity_framing"``), ``"model_language_framing"``."""
    out: dict = {"head": head, "cons": [], "parity": None}
    cons = [m for m in metrics if m.name == "consistency" and m.by is None]
    out["cons"] = cons
    specs: list[MetricSpec] = []
    if head is not None:
        specs.append(head)
        parity = next((m for m in metrics if m.name == "parity_gap" and m.by is None and m.args.get("metric") in (head.name, head.label)), None)
        if parity is None:
            args = {"metric": head.label}
            parity = MetricSpec(name="parity_gap", args=args, label=metric_label("parity_gap", args))
        out["parity"] = parity
    per_item = set(per_item_metrics())
    item_metrics = [m for m in metrics if m.name in per_item and not m.args.get("pair") and m.by is None and (head is None or m.label != head.label)]
    out["items"] = ([head] if head is not None else []) + item_metrics

    const = {a for a in group_by if a in df.columns and df[a].nunique(dropna=False) <= 1}
    declared = {m.label: m for m in metrics if m.by is None}

    def rows(specs_: list[MetricSpec], by: list[str]) -> list[dict]:
        by = [a for a in by if a in df.columns]
        reused, todo = [], []
        for sp in specs_:
            m = declared.get(sp.label)
            fold = set(folded_axes(sp.name, sp.args))
            same = (
                m is not None
                and m.name == sp.name
                and m.args == sp.args
                and set(by) - fold <= set(group_by)
                and set(group_by) - fold - const == set(by) - fold - const
            )
            if same:
                reused.extend(r for r in study_rows if r["metric"] == sp.label or r["metric"].startswith(sp.label + "."))
            else:
                todo.append(sp)
        if todo:
            # a metric that names another by label needs that one in the same request
            needed = {t.label for t in todo}
            for t in list(todo):
                ref = t.args.get("metric")
                if ref is not None and ref not in needed:
                    extra = next((x for x in specs_ if x.label == ref or x.name == ref), None)
                    if extra is not None:
                        todo.insert(0, extra)
                        needed.add(extra.label)
            computed = compute_rows(df, todo, by, warnings, f"{where} (summary)", n_boot)
            have = {r["metric"] for r in reused}
            reused.extend(r for r in computed if r["metric"] not in have)
        return reused

    def cons_not(axis: str) -> list[MetricSpec]:
        return [m for m in cons if m.args.get("over") != axis]

    parity = [out["parity"]] if out["parity"] else []
    tests = _tests(df, head)
    out.update({k: t.label if t is not None else None for k, t in tests.items()})
    out["model"] = rows(specs + parity + cons + [t for t in tests.values() if t is not None], ["model"])
    out["model_language"] = rows(specs + cons_not("language"), ["model", "language"])
    out["model_framing"] = rows(specs + parity + cons_not("framing"), ["model", "framing"])
    out["parity_framing"] = out["model_framing"]
    out["model_language_framing"] = rows(out["items"], ["model", "language", "framing"])
    return out
