"""Pairwise verdicts (``answer = pairwise(a = chosen, b = rejected)``): candidates shown in a
seeded random order recorded per row, the verdict mapped back through it, ties and
unreadable verdicts scored as declared, and position bias.  Through a real local Ray
cluster with the fake engine, whose pairwise judge always answers ``[[A]]``."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow.parquet as pq
import pytest

from support import fake_engine  # noqa: F401  (registers the fake engine)
from xlspec import plan as planmod
from xlspec.answers.pairwise import preference, shown, verdict
from xlspec.api import compile_file
from xlspec.parsers import build
from xlspec.runtime.report import build_reports
from xlspec.runtime.scheduler import Progress, run_plan


def balanced_ids(n: int) -> list[str]:
    """Item ids half of which the seed-0 coin swaps (so an always-A judge scores 0.5)."""
    swapped, kept = [], []
    i = 0
    while len(swapped) < n // 2 or len(kept) < n // 2:
        item = f"p{i}"
        (swapped if hashlib.sha256(f"0\0{item}".encode()).digest()[0] & 1 else kept).append(item)
        i += 1
    return sorted(swapped[: n // 2] + kept[: n // 2])


SPEC = """experiment prefs "Pairwise judge"
dataset prefs = jsonl("prefs.jsonl") { id = id  prompt = prompt[lang]  chosen = chosen[lang]  rejected = rejected[lang] }
framing compare {
  en = "Question: {prompt}\\n[A] {a}\\n[B] {b}\\nWhich answer is better? Reply [[A]] or [[B]], or [[C]] for a tie."
  de = "Frage: {prompt}\\n[A] {a}\\n[B] {b}\\nWelche Antwort ist besser? Antworte [[A]] or [[B]], oder [[C]] bei Gleichstand."
}
model judge = hf("builtin:smollm2-135m-instruct")
study ab {
  model = judge
  dataset = prefs
  language = [en, de]
  framing = compare
  answer = pairwise(a = chosen, b = rejected)
  metrics = [mean(preference), position_bias, invalid_rate]
}
"""


def write(root, ids):
    rows = [{"id": i, "prompt": {"en": f"Question {i}?", "de": f"Frage {i}?"}, "chosen": {"en": f"good {i}", "de": f"gut {i}"},
             "rejected": {"en": f"bad {i}", "de": f"schlecht {i}"}} for i in ids]
    (root / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "prefs.xls").write_text(SPEC, encoding="utf-8")
    result = compile_file(str(root / "prefs.xls"), str(root / "build"))
    assert result.ok, [d.message for d in result.diagnostics]
    path = str(root / "build" / "prefs.plan.json")
    planmod.write(result.data, path)
    return path


def test_the_verdict_is_mapped_back_through_the_shown_order():
    answer = {"kind": "pairwise", "args": {"a": "chosen", "b": "rejected", "tie": 0.5, "invalid": 0.25, "swap": True}}
    values = {"chosen": "good", "rejected": "bad"}
    orders = {shown(answer, values, f"x{i}", 0)[1] for i in range(40)}
    assert orders == {"ab", "ba"}  # the coin swaps some items and not others
    for item in (f"x{i}" for i in range(40)):
        candidates, order = shown(answer, values, item, 0)
        assert candidates == ({"a": "good", "b": "bad"} if order == "ab" else {"a": "bad", "b": "good"})
        assert shown(answer, values, item, 0) == (candidates, order)  # seeded: the same every time
    assert [verdict(p, "ab") for p in ("A", "B", "tie", None)] == ["a", "b", "tie", None]
    assert [verdict(p, "ba") for p in ("A", "B", "tie", None)] == ["b", "a", "tie", None]
    assert [preference(answer, d) for d in ("a", "b", "tie", None)] == [1.0, 0.0, 0.5, 0.25]
    assert shown({"args": {"a": "chosen", "b": "rejected", "swap": False}}, values, "x1", 0)[1] == "ab"
    parse = build("ab_verdict")
    assert [parse(t, []) for t in ("[[A]]", "I pick [[ b ]].", "[[C]]", "[[tie]]", " (B) ", "A.", "Both are fine", "AB")] == ["A", "B", "tie", "tie", "B", "A", None, None]


def test_a_judge_that_always_answers_a_scores_half_on_a_balanced_swap(ray_cluster, tmp_path):
    ids = balanced_ids(8)
    path = write(tmp_path, ids)
    report = run_plan(path, str(tmp_path / "runs"), engine_override="fake", progress=Progress(io.StringIO()))
    assert report.complete
    build_reports(report.run_dir, planmod.load(path), path, n_boot=0)  # metrics.parquet and the reports
    rows = pq.read_table(tmp_path / "runs" / "prefs" / "results.parquet").to_pylist()
    assert len(rows) == 16 and {r["answer_kind"] for r in rows} == {"pairwise"}
    for r in rows:
        # the judge always picked the shown-first candidate; the row says which that was
        assert r["parsed_answer"] == "A"
        assert r["verdict"] == ("a" if r["candidate_order"] == "ab" else "b")
        good, bad = ("good", "bad") if r["language"] == "en" else ("gut", "schlecht")
        first, second = (good, bad) if r["candidate_order"] == "ab" else (bad, good)
        assert f"[A] {first}" in r["prompt"] and f"[B] {second}" in r["prompt"]
        assert dict(r["scores"]) == {"preference": 1.0 if r["verdict"] == "a" else 0.0}
    # the same item is shown the same way in both languages, half of the items swapped
    by_item = {}
    for r in rows:
        by_item.setdefault(r["item_id"], set()).add(r["candidate_order"])
    assert all(len(v) == 1 for v in by_item.values()) and sorted(o for (o,) in by_item.values()) == ["ab"] * 4 + ["ba"] * 4
    metrics = pq.read_table(tmp_path / "runs" / "prefs" / "metrics.parquet").to_pandas()
    pooled = metrics[metrics.language.notna()]
    for lang in ("en", "de"):
        here = pooled[pooled.language == lang].set_index("metric")["value"]
        assert here["mean(field=preference)"] == pytest.approx(0.5)
        assert here["position_bias"] == pytest.approx(1.0)
        assert here["invalid_rate"] == pytest.approx(0.0)


def test_pairwise_mistakes_are_located(tmp_path):
    from xlspec.diagnostics import render_text

    ids = balanced_ids(2)
    write(tmp_path, ids)
    bad = SPEC.replace("pairwise(a = chosen, b = rejected)", "pairwise(a = chosen, b = rejectd)")
    (tmp_path / "prefs.xls").write_text(bad, encoding="utf-8")
    result = compile_file(str(tmp_path / "prefs.xls"), str(tmp_path / "build"))
    text = render_text(result.diagnostics.sorted(), result.sources)
    assert [d.code for d in result.diagnostics] == ["E011"], text
    assert "maps no field `rejectd`" in text and "did you mean `rejected`?" in text
    no_ab = SPEC.replace("answer = pairwise(a = chosen, b = rejected)", "answer = generate")
    (tmp_path / "prefs.xls").write_text(no_ab.replace("metrics = [mean(preference), position_bias, invalid_rate]", "metrics = [position_bias]"), encoding="utf-8")
    result = compile_file(str(tmp_path / "prefs.xls"), str(tmp_path / "build"))
    codes = sorted({d.code for d in result.diagnostics})
    assert codes == ["E006", "E009"], render_text(result.diagnostics.sorted(), result.sources)  # {a}/{b} have no source; position_bias needs pairwise


DUEL = """experiment duel "Three generators, judged two at a time"
dataset prompts = jsonl("prompts.jsonl") { id = id  question = question[lang] }
framing ask { en = "{question}"  de = "{question}" }
framing compare {
  en = "Question: {question}\\n[A] {a}\\n[B] {b}\\nWhich answer is better? Reply [[A]] or [[B]]."
  de = "Frage: {question}\\n[A] {a}\\n[B] {b}\\nWelche Antwort ist besser? Antworte [[A]] or [[B]]."
}
model writer = hf("builtin:smollm2-135m-instruct")
model other = hf("builtin:smollm2-135m-instruct") { dtype = float32 }
model third = hf("builtin:smollm2-135m-instruct") { dtype = bfloat16 }
model judge = hf("builtin:smollm2-135m-instruct") { max_model_len = 2048 }
study gen { model = [writer, other, third]  dataset = prompts  language = [en, de]  framing = ask  answer = generate }
dataset duels = responses(gen, pair = model) { generator = model }
study judge_ab {
  model = judge
  dataset = duels
  language = [en, de]
  framing = compare
  answer = pairwise(a = response_a, b = response_b)
  metrics = [mean(preference, by = [generator_a, generator_b]), position_bias]
}
"""


def test_two_upstream_models_judged_side_by_side(ray_cluster, tmp_path):
    """``responses(gen, pair = model)``: every two generators' responses to one prompt are
    one item (3 generators: 3 pairs), shown as A and B with the seeded swap; the row names
    both generators and both generations it judged."""
    rows = [{"id": f"q{i}", "question": {"en": f"Question {i}?", "de": f"Frage {i}?"}} for i in range(2)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "duel.xls").write_text(DUEL, encoding="utf-8")
    result = compile_file(str(tmp_path / "duel.xls"), str(tmp_path / "build"))
    assert result.ok, [d.message for d in result.diagnostics]
    path = str(tmp_path / "build" / "duel.plan.json")
    planmod.write(result.data, path)
    plan = planmod.load(path)
    estimate = sum(c.estimate.requests for c in plan.cells if c.study == "judge_ab")
    assert estimate == 2 * 2 * 3  # 2 languages x 2 prompts x 3 pairs
    report = run_plan(path, str(tmp_path / "runs"), engine_override="fake", progress=Progress(io.StringIO()))
    assert report.complete
    build_reports(report.run_dir, plan, path, n_boot=0)
    table = pq.read_table(tmp_path / "runs" / "duel" / "results.parquet").to_pylist()
    gen = {r["request_id"]: r for r in table if r["study"] == "gen"}
    judged = [r for r in table if r["study"] == "judge_ab"]
    assert len(judged) == estimate
    pairs = sorted({(dict(r["upstream"])["generator_a"], dict(r["upstream"])["generator_b"]) for r in judged})
    assert pairs == [("other", "third"), ("other", "writer"), ("third", "writer")]
    for r in judged:
        up = dict(r["upstream"])
        a, b = gen[r["upstream_request_id"]], gen[up["request_id_b"]]
        assert (a["model"], b["model"]) == (up["generator_a"], up["generator_b"])
        assert a["language"] == b["language"] == r["language"] and a["item_id"] == b["item_id"]
        first, second = (a, b) if r["candidate_order"] == "ab" else (b, a)
        assert f"[A] {first['response']}\n[B] {second['response']}" in r["prompt"]
        assert r["verdict"] == ("a" if r["candidate_order"] == "ab" else "b")  # the judge always says A
        assert f"model={up['generator_a']}~{up['generator_b']}|" in r["item_id"]
    metrics = pq.read_table(tmp_path / "runs" / "duel" / "metrics.parquet").to_pandas()
    by_pair = metrics[metrics.metric == "mean(field=preference, by=generator_a+generator_b)"]
    assert sorted(zip(by_pair.generator_a, by_pair.generator_b)) == pairs
