"""What a report says about a study: the summary (plain sentences and small tables per
model), every metric's table and its language x framing pivots, the items whose answer
flips between languages, and the refusals with the option their probabilities preferred.

Answers and refusals are read with the metrics package's per-row API
(``runtime/metrics/columns.py``), so these tables agree with the metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlspec.axes import CELL_AXIS_NAMES, GROUP_AXES
from xlspec.normalize import normalize_label
from xlspec.spec import MetricSpec

from ..metrics.aggregate import best_kind
from ..metrics.columns import Columns, answered_rows, chosen_answers, kind_rank, missing, refused, top_option
from .common import clean, column_values, context_text, find, ordered, sort_key, stat_of, text_or_none
from .render import excerpt, pct, stat

MAX_SAMPLES = 100
"""Flipped items shown per study (``samples_total`` counts them all)."""
MAX_REFUSALS = 100
"""Refusals shown per study (``refusals_total`` counts them all)."""
RESPONSE_CHARS = 300
"""How much of a response a flipped item or a refusal shows."""

SHOWN_AXES = ("model", "language", "framing", "mode")
"""Axes the flipped-item and refusal tables show in columns of their own."""
CONTEXT_AXES = tuple(a for a in GROUP_AXES if a not in SHOWN_AXES and a != "answer_kind")
"""Other axes, shown as ``context`` ("k=v, ...") where they vary in the study."""
ROW_KEY = ("item_id", *CELL_AXIS_NAMES)
"""What a refused answer and the options row of the same prompt share."""
REFUSED, NO_ANSWER = "(refused)", "(none)"


# ----------------------------------------------------------------------------- summary


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


def _kind_note(df: pd.DataFrame, head: MetricSpec | None) -> str | None:
    """Where a study asks several answer kinds that each choose an option (``options +
    generate``), the headline metric reads one per item: say which, rather than leave it
    silent."""
    from xlspec.answers import kinds_providing

    from ..metrics.registry import METRICS

    info = METRICS.get(head.name) if head is not None else None
    if info is None or "choice" not in info.needs or "answer_kind" not in df.columns:
        return None
    order = kinds_providing("choice")
    present = sorted({k for k in df["answer_kind"].dropna().unique() if k in order}, key=order.get)
    if len(present) < 2:
        return None
    return (f"{head.label} reads each item's {present[0]} answer where it has one, then "
            + ", then ".join(present[1:])
            + f": the study asks {len(present)} answer kinds; group by answer_kind to see each.")


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _chance_words(pooled: dict, model) -> str:
    """"; chance is 0.250: above chance (p < 0.001, ...)" where the summary tested it."""
    if not pooled.get("chance"):
        return ""
    level = find(pooled["model"], pooled["chance"], model=model)
    test = find(pooled["model"], pooled["above_chance"], model=model)
    if level is None or level.get("value") is None or test is None or test.get("value") is None:
        return ""
    verdict = "above chance" if test["value"] < 0.05 else "not distinguishable from chance"
    return f"; a random guess scores {level['value']:.3f}: {verdict} ({p_text(test['value'])}, one-sided test of no better than chance over {test['n']} items)"


def _effect_words(pooled: dict, model) -> str:
    """"; the languages differ (p = ..., permutation test)" or that they cannot be told apart."""
    if not pooled.get("language_effect"):
        return ""
    test = find(pooled["model"], pooled["language_effect"], model=model)
    if test is None or test.get("value") is None:
        return ""
    if test["value"] < 0.05:
        return f"; the languages differ ({p_text(test['value'])}, permutation test of no language effect over {test['n']} items)"
    return f"; no difference between the languages can be told from noise ({p_text(test['value'])}, permutation test of no language effect over {test['n']} items)"


def summary(sname, df, head: MetricSpec | None, pooled: dict, names: dict, axes: dict) -> dict:
    """``{study, headline, findings, tables}``: sentences per model (the headline overall,
    best and worst language with the parity gap, per framing, the share of items answered
    the same in every language / under every framing) and the headline and consistency
    metrics by language and by framing, one column per model."""
    models = column_values(df, "model", axes.get("model"))
    languages = column_values(df, "language", axes.get("language"))
    framings = column_values(df, "framing", axes.get("framing"))
    cons = pooled["cons"]
    cons_lang = next((m for m in cons if m.args.get("over") == "language"), None)
    cons_fram = next((m for m in cons if m.args.get("over") == "framing"), None)
    hl = head.label if head else None
    findings: list[str] = []
    tables: list[dict] = []

    for model in models:
        sentences = []
        if hl:
            overall = find(pooled["model"], hl, model=model)
            if overall is not None and overall.get("value") is not None:
                sentences.append(f"{model}: {hl} {stat(overall)} over {overall['n']} items" + _chance_words(pooled, model) + ".")
            else:
                sentences.append(f"{model}: no {hl} value.")
            per_lang = [(lang, find(pooled["model_language"], hl, model=model, language=lang)) for lang in languages]
            per_lang = [(lang, r) for lang, r in per_lang if r is not None and r.get("value") is not None]
            if len(per_lang) >= 2:
                best = max(per_lang, key=lambda t: t[1]["value"])
                worst = min(per_lang, key=lambda t: t[1]["value"])
                if best[1]["value"] == worst[1]["value"]:  # a tie has no highest and lowest
                    text = f"The same in all {len(per_lang)} languages: {best[1]['value']:.3f}"
                else:
                    text = f"Highest in {_lang_label(best[0], names)} {stat(best[1])}, lowest in {_lang_label(worst[0], names)} {stat(worst[1])}"
                gap = find(pooled["model"], pooled["parity"].label, model=model) if pooled["parity"] else None
                if gap is not None and gap.get("value") is not None:
                    text += f": a gap of {stat(gap)}"
                sentences.append(text + _effect_words(pooled, model) + ".")
            per_fr = [(fr, find(pooled["model_framing"], hl, model=model, framing=fr)) for fr in framings]
            per_fr = [(fr, r) for fr, r in per_fr if r is not None and r.get("value") is not None]
            if len(per_fr) >= 2:
                sentences.append("By framing: " + ", ".join(f"{fr} {stat(r)}" for fr, r in per_fr) + ".")
        same = []
        for m, what in ((cons_lang, "in every language"), (cons_fram, "under every framing")):
            r = find(pooled["model"], m.label, model=model) if m is not None else None
            if r is not None and r.get("value") is not None:
                ci = f" [{pct(r['ci_low'])}, {pct(r['ci_high'])}]" if r.get("ci_low") is not None and r.get("ci_high") is not None else ""
                same.append(f"{what} for {pct(r['value'])} of items{ci}")
        if same:
            prefix = "" if hl else f"{model}: "
            sentences.append(f"{prefix}The same answer " + ", and ".join(same) + ".")
        if sentences:
            findings.append(" ".join(sentences))

    note = _kind_note(df, head)
    if note:
        findings.append(note)

    # One small table per (axis, metric): the axis' values down, the models across.
    for axis, values, label_of, pooled_rows, metric, note in (
        ("language", languages, lambda v: _lang_label(v, names), pooled["model_language"], hl, "pooled over framings and every other axis"),
        ("framing", framings, lambda v: "—" if v is None else str(v), pooled["model_framing"], hl, "pooled over languages and every other axis"),
        ("language", languages, lambda v: _lang_label(v, names), pooled["model_language"], cons_fram.label if cons_fram else None, "share of items with the same answer under every framing"),
        ("framing", framings, lambda v: "—" if v is None else str(v), pooled["model_framing"], cons_lang.label if cons_lang else None, "share of items with the same answer in every language"),
    ):
        if metric is None or len(values) < 2 and axis == "framing":
            continue
        trows = [[label_of(v)] + [stat_of(find(pooled_rows, metric, model=model, **{axis: v})) for model in models] for v in values]
        if any(c is not None for row in trows for c in row[1:]):
            tables.append({"title": f"{metric} by {axis}", "metric": metric, "axis": axis, "note": note, "columns": [axis] + [str(m) for m in models], "rows": trows})
    return {"study": sname, "headline": hl, "findings": findings, "tables": tables}


# ----------------------------------------------------------------------------- metric tables


def metric_tables(sname, metrics: list[MetricSpec], rows: list[dict]) -> list[dict]:
    """Per declared metric (per output, for a metric with several) a table of all its rows;
    ``note`` names the axes that are the same on every row."""
    out = []
    labels = []
    for m in metrics:
        lbl = m.label
        labels.extend([lbl] if not any(r["metric"].startswith(lbl + ".") for r in rows) else sorted({r["metric"] for r in rows if r["metric"].startswith(lbl + ".")}))
    for lbl in labels:
        mrows = [r for r in rows if r["metric"] == lbl]
        if not mrows:
            continue
        varying, constant = [], []
        for a in CELL_AXIS_NAMES + tuple(k for k in mrows[0] if k not in CELL_AXIS_NAMES and k not in ("study", "metric", "value", "ci_low", "ci_high", "n")):
            vals = {r.get(a) for r in mrows}
            if vals == {None}:
                continue
            (varying if len(vals) > 1 else constant).append(a)
        note = ", ".join(f"{a} = {mrows[0][a]}" for a in constant) or None
        columns = varying + [lbl, "n"]
        trows = [[("—" if r.get(a) is None else str(r.get(a))) for a in varying] + [stat_of(r), r.get("n")] for r in mrows]
        out.append({"study": sname, "metric": lbl, "title": lbl, "note": note, "columns": columns, "rows": trows})
    return out


def pivots(sname, rows: list[dict], axes: dict) -> list[dict]:
    """Per metric with a language and per model: languages down (after any other axis that
    varies), framings across."""
    out = []
    pivot_axes = ("model", "language", "framing")
    for lbl in dict.fromkeys(r["metric"] for r in rows):
        mrows = [r for r in rows if r["metric"] == lbl and r.get("language") is not None]
        if not mrows:
            continue
        framings = ordered({r.get("framing") for r in mrows}, axes.get("framing"))
        lang_rank = {v: i for i, v in enumerate(ordered({r.get("language") for r in mrows}, axes.get("language")))}
        for model in ordered({r.get("model") for r in mrows}, axes.get("model")):
            sub = [r for r in mrows if r.get("model") == model]
            others = [a for a in CELL_AXIS_NAMES if a not in pivot_axes and len({r.get(a) for r in sub}) > 1]
            constant = [a for a in CELL_AXIS_NAMES if a not in pivot_axes and a not in others and {r.get(a) for r in sub} != {None}]
            keys = sorted({tuple(r.get(a) for a in others) + (r.get("language"),) for r in sub}, key=lambda t: tuple(sort_key(v) for v in t[:-1]) + (lang_rank[t[-1]],))
            cell = {(tuple(r.get(a) for a in others) + (r.get("language"),), r.get("framing")): r for r in sub}
            trows = [[("—" if v is None else str(v)) for v in key] + [stat_of(cell.get((key, fr))) for fr in framings] for key in keys]
            columns = others + ["language"] + [("all framings" if fr is None else str(fr)) for fr in framings]
            note = ", ".join(f"{a} = {sub[0][a]}" for a in constant) or None
            out.append({"study": sname, "metric": lbl, "model": model, "framings": framings, "title": f"{lbl} · {model}", "note": note, "columns": columns, "rows": trows})
    return out


# ----------------------------------------------------------------------------- answers


def _varying(df: pd.DataFrame) -> list[str]:
    return [a for a in CONTEXT_AXES if a in df.columns and df[a].nunique(dropna=True) > 1]


def _described(sname: str, rec, shown: tuple[str, ...], context_axes: list[str]) -> dict:
    """The study, the item, the ``shown`` axes and the context of a result row."""
    return {"study": sname, "item_id": text_or_none(rec["item_id"]), **{a: text_or_none(rec.get(a)) for a in shown}, "context": context_text(rec, context_axes)}


def _response(rec) -> str | None:
    return excerpt(rec.get("response"), RESPONSE_CHARS) if not missing(rec.get("response")) else None


def _shown_answers(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Per row: the answer as shown (the parsed answer as written, else the top option of
    a probability kind; ``(refused)``, ``(none)``) and the key two answers are compared by
    (the metrics' chosen answer; a refusal and no answer differ from every option and from
    each other)."""
    is_refused = refused(df)
    chosen = chosen_answers(df)
    top = top_option(df)[0]
    has_probs = kind_rank(df, "probs") >= 0
    parsed = df["parsed_answer"].to_numpy(dtype=object) if "parsed_answer" in df.columns else np.full(len(df), None, dtype=object)
    shown, keys = [], []
    for r, c, p, t, pr in zip(is_refused, chosen, parsed, top, has_probs):
        if r:
            shown.append(REFUSED)
            keys.append("\x00refused")
            continue
        if not missing(p):
            shown.append(str(p))
        elif pr and t is not None:
            shown.append(str(t))
        else:
            shown.append(NO_ANSWER)
        keys.append("\x00none" if c is None else c)
    return shown, keys


def flipped(sname: str, df: pd.DataFrame) -> tuple[list[dict], int, set]:
    """Items whose answer differs between languages, every other axis equal (the units
    ``consistency(over = language)`` scores), each answer the one the metrics read, of the
    preferred answer kind.  Unlike that metric, a refusal and an answer that could not be
    read differ here (the table shows which).  At most ``MAX_SAMPLES``, how many such units
    there are (an item under one model, framing, mode, ...), and the distinct items among
    them as (dataset, item id)."""
    df = answered_rows(df)
    if len(df) == 0 or "language" not in df.columns:
        return [], 0, set()
    shown, keys = _shown_answers(df)
    df = df.assign(_rank=kind_rank(df, "choice"), _answer=shown, _norm=keys, _code=Columns(df, drop_errors=False).unit_codes(("language",)))
    df = best_kind(df[df["_rank"].to_numpy() >= 0], ["_code"])
    codes = df["_code"].to_numpy()
    n_langs = pd.Series(df["language"].to_numpy(dtype=object)).groupby(codes).nunique()
    n_answers = pd.Series(df["_norm"].to_numpy(dtype=object)).groupby(codes).nunique()
    flips = n_langs.index[((n_langs >= 2) & (n_answers >= 2)).to_numpy()].to_numpy()
    total = len(flips)
    if total == 0:
        return [], 0, set()
    sel = df[np.isin(codes, flips)]
    items = set(zip(sel["dataset"].map(text_or_none), sel["item_id"].map(text_or_none))) if "dataset" in sel.columns else {(None, text_or_none(i)) for i in sel["item_id"]}
    context_axes = _varying(df)
    # the first MAX_SAMPLES units in a stable order; only those are materialised
    heads = sel.drop_duplicates("_code")
    order = sorted(
        heads[["_code", "model", "item_id", "framing", "mode"] + context_axes].to_dict("records"),
        key=lambda r: (sort_key(text_or_none(r["model"])), sort_key(text_or_none(r["item_id"])), sort_key(text_or_none(r["framing"])), sort_key(text_or_none(r["mode"])), context_text(r, context_axes)),
    )
    chosen = [r["_code"] for r in order[:MAX_SAMPLES]]
    groups = {c: g for c, g in sel[np.isin(sel["_code"].to_numpy(), chosen)].groupby("_code", sort=False)}
    out = []
    for code in chosen:
        grp = groups[code]
        first = grp.iloc[0]
        gold = normalize_label(text_or_none(first.get("gold")))
        answers = [
            {
                "language": text_or_none(r["language"]),
                "answer": r["_answer"],
                "correct": None if gold is None else r["_norm"] == gold,
                "response": _response(r),
            }
            for r in sorted(grp.to_dict("records"), key=lambda r: sort_key(text_or_none(r["language"])))
        ]
        out.append({**_described(sname, first, ("model", "framing", "mode"), context_axes), "gold": text_or_none(first.get("gold")), "answers": answers})
    return out, total, items


def refusals(sname: str, df: pd.DataFrame, threshold: float, pool: pd.DataFrame) -> tuple[list[dict], int]:
    """Refused answers (as ``refusal_rate`` counts them), with the option their prompt's
    probabilities preferred (as ``logit_leakage`` reads it), leaking ones first.  The
    probabilities come from any study's options/loglik row of the same item and axes
    (``pool``, all results): one study may read the options of the prompts another one
    generates from.  At most ``MAX_REFUSALS``, and how many there are."""
    df = answered_rows(df)
    if len(df) == 0:
        return [], 0
    gen = df[refused(df)]
    total = len(gen)
    if total == 0:
        return [], 0
    pool = answered_rows(pool)
    key_axes = [a for a in ROW_KEY if a in df.columns and a in pool.columns]
    rank = kind_rank(pool, "probs")
    probs = pool[rank >= 0].assign(_pr=rank[rank >= 0])
    if "sample" in probs.columns:
        probs = probs.sort_values("sample", kind="stable", na_position="last")
    probs = probs.sort_values("_pr", kind="stable")
    leak: dict = {}
    if len(probs):
        labels, ps = top_option(probs)
        for rec, label, p in zip(probs[key_axes].to_dict("records"), labels, ps):
            if label is not None:
                leak.setdefault(tuple(clean(rec[a]) for a in key_axes), (label, float(p)))
    context_axes = _varying(df)
    out = []
    for rec in gen.to_dict("records"):
        label, p = leak.get(tuple(clean(rec[a]) for a in key_axes), (None, None))
        out.append(
            {
                **_described(sname, rec, SHOWN_AXES, context_axes),
                "response": _response(rec),
                "gold": text_or_none(rec.get("gold")),
                "leaked": label,
                "p": p,
                "leaks": p is not None and p >= threshold,
                "threshold": threshold,
            }
        )
    out.sort(key=lambda r: (not r["leaks"], sort_key(r["model"]), sort_key(r["item_id"]), sort_key(r["language"]), sort_key(r["framing"]), sort_key(r["mode"]), r["context"]))
    return out[:MAX_REFUSALS], total
