"""The metric registry: every metric registers itself from one module of
``runtime/metrics/defs/``, with what the checker, the report and ``compute_metrics`` read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xlspec.runtime.metrics.registry import METRICS, NEEDS, folded_axes, metric_label, per_item_metrics

# the metrics that existed before `mean`
OLD_CATALOG = {
    "accuracy", "exact_match", "token_f1", "chrf", "agreement", "kl", "js", "refusal_rate",
    "logit_leakage", "consistency", "parity_gap", "parity_std", "pivot_delta", "delta",
    "rank_stability", "language_fidelity",
}  # fmt: skip
OLD_ITEM_METRICS = {"accuracy", "exact_match", "token_f1", "chrf", "agreement", "kl", "js", "refusal_rate", "logit_leakage", "language_fidelity"}


def test_names_are_the_old_catalog_plus_the_new_metrics():
    tests = {"permutation_test", "sign_test", "axis_effect", "above_chance", "kappa", "percent_agreement"}
    assert set(METRICS.names()) == OLD_CATALOG | {"mean", "invalid_rate", "position_bias", "chance", "unparsable_rate", "derived"} | tests
    assert set(per_item_metrics()) == OLD_ITEM_METRICS | {"mean", "invalid_rate", "position_bias", "chance", "unparsable_rate"}


@pytest.mark.parametrize("name", sorted(OLD_CATALOG | {"mean", "invalid_rate", "position_bias"}))
def test_every_metric_is_described_and_computable(name):
    info = METRICS[name]
    assert info.name == name
    assert info.summary.strip()
    assert info.needs <= set(NEEDS)
    assert set(info.positional) <= {p.name for p in info.params}
    for p in info.params:
        assert p.summary.strip(), f"{name}: parameter {p.name} has no summary"
        assert p.default is None or not p.choices or p.default in p.choices
    comp = info.compute
    assert comp is not None
    if info.per_item:
        assert comp.scores is not None or comp.item_stats is not None  # can be aggregated
    else:
        assert comp.scores is not None or comp.item_stats is not None or comp.jobs is not None
    assert set(info.fills) <= set(info.folds({p.name: p.default for p in info.params if p.default is not None} | {"pair": {"axis": "x", "a": "1", "b": "2"}, "over": "x"}))


def test_every_metric_module_registers_something():
    import importlib
    import pkgutil

    import xlspec.runtime.metrics.defs as defs
    from xlspec.runtime.metrics.registry import MetricInfo

    registered = set()
    for mod in pkgutil.iter_modules(defs.__path__):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"xlspec.runtime.metrics.defs.{mod.name}")
        infos = [v for v in vars(module).values() if isinstance(v, MetricInfo)]
        assert infos, f"defs/{mod.name}.py registers no metric"
        registered |= {i.name for i in infos}
    assert registered == set(METRICS.names())


def test_fold_rule():
    pair = {"axis": "mode", "a": "direct", "b": "reason"}
    assert folded_axes("consistency", {"over": "language"}) == ("language",)
    assert folded_axes("parity_gap", {"metric": "accuracy"}) == ("language",)
    assert folded_axes("parity_std", {"metric": "accuracy"}) == ("language",)
    assert folded_axes("delta", {"metric": "accuracy", "pair": pair}) == ("mode",)
    assert set(folded_axes("rank_stability", {"metric": "accuracy", "pair": pair})) == {"model", "mode"}
    assert folded_axes("agreement", {"pair": pair}) == ("mode",)
    assert folded_axes("agreement", {}) == ()
    assert folded_axes("accuracy") == ()
    # pivot_delta folds language from its grouping but names it in its rows
    assert METRICS["pivot_delta"].folds({"metric": "accuracy"}) == ("language",)
    assert folded_axes("pivot_delta", {"metric": "accuracy"}) == ()
    assert folded_axes("no_such_metric", {}) == ()


def test_report_fields():
    assert {n for n, m in METRICS.items() if m.share} == {"accuracy", "exact_match", "agreement", "token_f1", "refusal_rate", "logit_leakage", "language_fidelity", "consistency", "invalid_rate", "position_bias", "chance", "percent_agreement", "unparsable_rate"}
    ranked = sorted((m.headline_rank, n) for n, m in METRICS.items() if m.headline_rank is not None)
    assert [n for _, n in ranked][:8] == ["accuracy", "exact_match", "agreement", "token_f1", "chrf", "language_fidelity", "kl", "js"]


def test_metric_label():
    assert metric_label("accuracy", {}) == "accuracy"
    assert metric_label("delta", {"metric": "accuracy", "pair": {"axis": "mode", "a": "x", "b": "y"}}) == "delta(metric=accuracy, mode=x-y)"
    assert metric_label("logit_leakage", {"threshold": 1.0}, ["language"]) == "logit_leakage(threshold=1, by=language)"


def test_what_answer_kinds_provide():
    from xlspec.answers import ANSWER_KINDS

    assert {name: frozenset(k.provides) for name, k in ANSWER_KINDS.items()} == {
        "generate": frozenset({"choice", "text", "parsed"}),
        "options": frozenset({"choice", "probs"}),
        "loglik": frozenset({"choice", "probs"}),
        "pairwise": frozenset({"parsed"}),
        "classify": frozenset({"choice", "probs"}),
        "reward": frozenset(),  # scores only (reward, or reward_a, reward_b, margin, preference)
        "implicit_reward": frozenset(),
    }


def test_registry_and_metric_modules_import_neither_numpy_nor_pandas():
    code = (
        "import sys\n"
        "import xlspec.runtime.metrics.registry as r\n"
        "names = r.METRICS.names()\n"
        "import xlspec.runtime.metrics, xlspec.runtime.metrics.spec\n"
        "assert 'mean' in names, names\n"
        "heavy = [m for m in ('numpy', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_requests_are_checked_against_the_registry():
    import pandas as pd

    from xlspec.runtime.metrics import compute_metrics

    df = pd.DataFrame([{"item_id": "q1", "model": "m", "gold": "1", "parsed_answer": "1"}])
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(df, [{"name": "acurracy"}], [])
    with pytest.raises(ValueError, match="unknown argument"):
        compute_metrics(df, [{"name": "accuracy", "args": {"over": "language"}}], [])
    with pytest.raises(ValueError, match="required"):
        compute_metrics(df, [{"name": "consistency"}], [])
    with pytest.raises(ValueError, match="not one of"):
        compute_metrics(df, [{"name": "kl", "args": {"p": "answer"}}], [])
    with pytest.raises(ValueError, match="per-item"):
        compute_metrics(df, [{"name": "consistency", "args": {"over": "model"}, "label": "c"}, {"name": "parity_gap", "args": {"metric": "c"}}], [])
