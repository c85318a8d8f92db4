"""The checker and the plan for reward models, classifier heads and DPO implicit rewards:
which models serve which answer kinds, the reference model an answer names, and what goes
into ids (no model is loaded here)."""

from __future__ import annotations

import json

import pytest

from xlspec.answers.implicit_reward import rewards
from xlspec.answers.reward import candidate_scores
from xlspec import plan as planmod
from xlspec.api import compile_file
from xlspec.diagnostics import render_text
from xlspec.identity import model_identity

DATA = [
    {"id": "p1", "prompt": {"en": "2+2?", "de": "2+2?"}, "chosen": {"en": "4", "de": "4"}, "rejected": {"en": "5", "de": "5"}, "label": "entailment"},
    {"id": "p2", "prompt": {"en": "Sky?", "de": "Himmel?"}, "chosen": {"en": "blue", "de": "blau"}, "rejected": {"en": "red", "de": "rot"}, "label": "neutral"},
]

HEAD = """experiment prefs "Preferences"
dataset pairs = jsonl("pairs.jsonl") { id = id  prompt = prompt[lang]  chosen = chosen[lang]  rejected = rejected[lang] }
framing ask { en = "{prompt}"  de = "{prompt}" }
model rm = hf("builtin:smollm2-135m-untrained-reward")
model smol = hf("builtin:smollm2-135m-instruct")
model plain = hf("builtin:smollm2-135m-instruct") { chat = false }
"""


def compile_text(tmp_path, body: str, head: str = HEAD):
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in DATA), encoding="utf-8")
    (tmp_path / "s.xls").write_text(head + body, encoding="utf-8")
    result = compile_file(str(tmp_path / "s.xls"), str(tmp_path / "build"))
    text = render_text(result.diagnostics.sorted(), result.sources)
    if result.ok:
        planmod.write(result.data, result.plan_path)
    return result, text


def study(model: str, answer: str) -> str:
    return f"study s {{\n  model = {model}\n  dataset = pairs\n  language = [en, de]\n  framing = ask\n  answer = {answer}\n  metrics = [mean(preference)]\n}}\n"


def test_the_builtin_reward_model_is_a_classifier_head(tmp_path):
    result, text = compile_text(tmp_path, study("rm", "reward(a = chosen, b = rejected)"))
    assert result.ok, text
    plan = json.loads((tmp_path / "build" / "prefs.plan.json").read_text())
    assert plan["models"]["rm"]["head"] == "classifier"
    assert plan["studies"]["s"]["answers"] == [{"args": {"a": "chosen", "b": "rejected", "tie": 0.5}, "kind": "reward"}]


@pytest.mark.parametrize(
    ("model", "answer", "message"),
    [
        ("smol", "reward(a = chosen, b = rejected)", "error[E009]: model `smol` has head `lm`, and answer kind `reward` needs a model with head `classifier`"),
        ("rm", "generate", "error[E009]: model `rm` has head `classifier`, and answer kind `generate` needs a model with head `lm`"),
        ("rm", "implicit_reward(a = chosen, reference = smol)", "needs a model with head `lm`"),
        ("smol", "implicit_reward(a = chosen, b = rejected, reference = plian)", "error[E003]: undefined model `plian`"),
        ("smol", "implicit_reward(a = chosen, b = rejected, reference = rm)", "error[E009]: `implicit_reward`'s `reference` must be a language model; model `rm` has head `classifier`"),
        ("smol", "implicit_reward(a = chosen, b = rejected)", "error[E014]: `implicit_reward` needs `reference`"),
        ("smol", "implicit_reward(a = chosen, b = rejected, reference = \"plain\")", "`implicit_reward`'s `reference` names a model of the spec"),
        ("rm", "reward(b = rejected)", "error[E011]: dataset `pairs` maps no field `response`, which `reward`'s `a` reads unless it is given"),
        ("rm", "reward(a = chosen, b = rejcted)", "error[E011]: dataset `pairs` maps no field `rejcted`"),
    ],
)
def test_answer_kinds_and_model_heads_are_checked(tmp_path, model, answer, message):
    result, text = compile_text(tmp_path, study(model, answer))
    assert not result.ok
    assert message in text, text
    assert "s.xls:" in text  # located


def test_a_reference_on_another_engine_is_an_error(tmp_path):
    head = HEAD + 'model vref = vllm("builtin:smollm2-135m-instruct")\n'
    _, text = compile_text(tmp_path, study("smol", "implicit_reward(a = chosen, b = rejected, reference = vref)"), head)
    assert "error[E009]: `implicit_reward`'s reference `vref` runs on engine `vllm`, and model `smol` on `hf`" in text, text
    assert "= help: both models run in one engine: declare `vref` with hf(...)" in text


def test_head_contradicting_a_builtin_is_an_error(tmp_path):
    head = HEAD.replace('hf("builtin:smollm2-135m-untrained-reward")', 'hf("builtin:smollm2-135m-untrained-reward") { head = lm }')
    _, text = compile_text(tmp_path, study("rm", "reward(a = chosen)"), head)
    assert "error[E014]: `builtin:smollm2-135m-untrained-reward` is a model with head `classifier`" in text, text


def test_the_reference_model_is_part_of_the_cell_and_request_ids(tmp_path):
    """Changing the reference model changes the DPO cells (and only them)."""
    from xlspec.lower import DataCache, cell_requests

    body = study("smol", "implicit_reward(a = chosen, b = rejected, reference = plain)") + study("smol", "options").replace("study s", "study t").replace("metrics = [mean(preference)]", "")
    ids = []
    for dtype in ("float32", "bfloat16"):
        head = HEAD.replace("{ chat = false }", f"{{ chat = false  dtype = {dtype} }}")
        result, text = compile_text(tmp_path, body.replace("answer = options", ""), head)
        assert result.ok, text
        path = str(tmp_path / "build" / "prefs.plan.json")
        plan = planmod.load(path)
        assert "plain" in plan.models  # the reference is in the plan, though no cell runs it
        cells = {c.study: c for c in plan.cells}
        reqs = cell_requests(plan, cells["s"], DataCache(plan, path))
        assert [r.request.reference for r in reqs] == ["plain"] * len(reqs)
        assert [r.request.options for r in reqs][0] == ("4", "5")
        ids.append(({c.study: c.id for c in plan.cells if c.axes["language"] == "en"}, reqs[0].request.request_id))
    (before, rid_before), (after, rid_after) = ids
    assert before["s"] != after["s"] and rid_before != rid_after
    assert before["t"] == after["t"]


def test_head_lm_leaves_ids_as_they_were():
    """``head`` joined the model's identity after ids were published: at its default it is
    left out, so the ids of every language model stay the same."""
    model = {"engine": "hf", "source": "x", "revision": None, "chat": True, "dtype": "auto", "max_model_len": None}
    assert model_identity({**model, "head": "lm"}) == model_identity(model) == {k: model[k] for k in ("engine", "source", "revision", "chat", "dtype", "max_model_len")}
    assert model_identity({**model, "head": "classifier"})["head"] == "classifier"


def test_candidate_scores():
    pair = {"args": {"a": "chosen", "b": "rejected", "tie": 0.5}}
    assert candidate_scores(pair, {"a": 2.0, "b": 1.0}) == ({"reward_a": 2.0, "reward_b": 1.0, "margin": 1.0, "preference": 1.0}, [], "a")
    assert candidate_scores(pair, {"a": 1.0, "b": 2.0})[0]["preference"] == 0.0
    assert candidate_scores({"args": {"a": "c", "b": "r", "tie": 0.25}}, {"a": 1.0, "b": 1.0})[1:] == ([], "tie")
    assert candidate_scores({"args": {"a": "c", "b": "r", "tie": 0.25}}, {"a": 1.0, "b": 1.0})[0]["preference"] == 0.25
    assert candidate_scores(pair, {"a": 1.0, "b": None}) == ({"reward_a": 1.0}, ["reward_b", "margin", "preference"], None)
    assert candidate_scores({"args": {"a": "response"}}, {"a": -0.5}) == ({"reward": -0.5}, [], None)
    assert candidate_scores({"args": {"a": "response"}}, {"a": None}) == ({}, ["reward"], None)
    # DPO: beta * (policy - reference), from the stored log-probabilities
    dpo = {"args": {"a": "chosen", "b": "rejected", "beta": 0.1}}
    got = rewards(dpo, {"a": -10.0, "a@reference": -12.0, "b": -9.0, "b@reference": -8.0})
    assert got == pytest.approx({"a": 0.2, "b": -0.1})
    assert rewards(dpo, {"a": -10.0}) == {"a": None, "b": None}


def test_a_reward_score_can_be_compared_across_languages(tmp_path):
    """``delta`` and ``rank_stability`` over ``mean(preference)``: the inner metric needs a
    score, which reward and pairwise answers have (no chosen answer needed)."""
    head = HEAD + 'model rm2 = hf("builtin:smollm2-135m-untrained-reward") { dtype = float32 }\n'
    body = study("[rm, rm2]", "reward(a = chosen, b = rejected)").replace(
        "metrics = [mean(preference)]", "metrics = [delta(mean(preference), language = en - de), rank_stability(mean(margin), language = en - de)]"
    )
    result, text = compile_text(tmp_path, body, head)
    assert result.ok, text
    bad = compile_text(tmp_path, body.replace("rank_stability(mean(margin), language = en - de)", "rank_stability(mean(margin), rank = language, language = en - de)"), head)[1]
    assert "error[E008]: `rank_stability` uses `language` twice" in bad, bad


def test_a_non_finite_reward_is_no_reward():
    pair = {"args": {"a": "chosen", "b": "rejected", "tie": 0.5}}
    assert candidate_scores(pair, {"a": float("nan"), "b": 1.0}) == ({"reward_b": 1.0}, ["reward_a", "margin", "preference"], None)
    assert candidate_scores({"args": {"a": "response"}}, {"a": float("inf")}) == ({}, ["reward"], None)
