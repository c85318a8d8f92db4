"""What statistics across cells cost: the plain metrics a report always computes beside
derived metrics, tests and agreement statistics, on a synthetic Global-MMLU-sized table
(models x languages x items, one options answer per item).  Prints seconds per metric (the
median of several runs) and each one's ratio to plain ``accuracy``, so a noisy machine still
shows which ones are expensive.

    python bench/derived.py [--models 4] [--languages 42] [--items 2000] [--runs 3] [--boot 1000]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xlspec.runtime.metrics import compute_metrics  # noqa: E402


def table(models: int, languages: int, items: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    langs = [f"l{i:02d}" for i in range(languages)]
    skill = rng.uniform(0.3, 0.8, size=(models, languages))
    rows = []
    for m in range(models):
        for li, lang in enumerate(langs):
            right = rng.random(items) < skill[m, li]
            wrong = rng.choice(["B", "C", "D"], size=items)
            for i in range(items):
                rows.append((f"m{m}", lang, f"q{i}", "A" if right[i] else wrong[i]))
    df = pd.DataFrame(rows, columns=["model", "language", "item_id", "parsed_answer"])
    df["gold"] = "A"
    df["answer_kind"] = "generate"
    df["n_options"] = 4
    return df


def derived(label: str, expr: dict) -> dict:
    return {"name": "derived", "args": {"expr": expr}, "label": label}


ACC = {"metric": "accuracy"}
CASES = {
    "accuracy": {"name": "accuracy"},
    "parity_gap(accuracy)": {"name": "parity_gap", "args": {"metric": "accuracy"}},
    "gap to the mean of the others (derived)": derived(
        "gap",
        {
            "op": "-",
            "left": {"select": {"language": "l00"}, "of": ACC},
            "right": {"reduce": "mean", "of": ACC, "over": "language", "where": {"cmp": "!=", "axis": "language", "value": "l00"}},
        },
    ),
    "spearman across languages of two models (derived)": derived(
        "rho", {"corr": "spearman", "x": {"select": {"model": "m0"}, "of": ACC}, "y": {"select": {"model": "m1"}, "of": ACC}, "across": "language"}
    ),
    "kappa(language = l00 - l01)": {"name": "kappa", "args": {"pair": {"axis": "language", "a": "l00", "b": "l01"}}},
    "axis_effect(accuracy) (permutation test)": {"name": "axis_effect", "args": {"metric": "accuracy"}},
    "above_chance": {"name": "above_chance"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--languages", type=int, default=42)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    df = table(args.models, args.languages, args.items)
    print(f"{len(df):,} result rows: {args.models} models x {args.languages} languages x {args.items} items, {args.boot} bootstrap resamples")
    base = None
    for name, request in CASES.items():
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            compute_metrics(df, [request], ["model", "language"], n_boot=args.boot)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        base = base or median
        print(f"  {name:<52} {median:7.2f} s  ({median / base:5.1f}x accuracy)")


if __name__ == "__main__":
    main()
