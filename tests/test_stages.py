"""Stages in the compiler: a study reading another study's responses (``dataset NAME =
responses(STUDY)``) is checked against the study it reads, and its cells name the upstream
cells they read, so the plan is a DAG.  Running stages: tests/runtime/test_stages_run.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlspec import plan as planmod
from xlspec.api import compile_file
from xlspec.diagnostics import render_text
from xlspec.plan import PlanError, dumps

ROWS = [
    {"id": "q1", "question": {"en": "Name a colour.", "fr": "Nommez une couleur.", "et": "Nimeta värv."}},
    {"id": "q2", "question": {"en": "Name a fruit.", "fr": "Nommez un fruit.", "et": "Nimeta puuvili."}},
]

GENERATE = """experiment stages "Generate, then judge"
dataset prompts = jsonl("prompts.jsonl") { id = id  question = question[lang] }
framing ask { en = "{question}"  fr = "{question}"  et = "{question}" }
framing rubric {
  en = "Question: {question}\\nAnswer: {response}\\nRate the answer from 0 to 4."
  fr = "Question : {question}\\nRéponse : {response}\\nNotez de 0 à 4."
  et = "Küsimus: {question}\\nVastus: {response}\\nHinda 0 kuni 4."
}
model writer = hf("builtin:smollm2-135m-instruct")
model other = hf("builtin:smollm2-135m-instruct") { dtype = float32 }
model judge_model = hf("builtin:smollm2-135m-instruct")
study gen {
  model = [writer, other]
  dataset = prompts
  language = [en, fr, et]
  framing = ask
  answer = generate
}
"""

JUDGE = """dataset answers = responses(gen) { generator = model }
study judge {
  model = judge_model
  dataset = answers
  language = [en, fr, et]
  framing = rubric
  answer = generate(parser = regex("([0-4])"))
}
"""


def compile_text(tmp_path, in_dir, text: str, rows: list[dict] = ROWS):
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "stages.xls").write_text(text, encoding="utf-8")
    with in_dir(tmp_path):
        result = compile_file("stages.xls", str(tmp_path / "build"))
        result.text = render_text(result.diagnostics.sorted(), result.sources)
    return result


def errors(result, code: str | None = None) -> list:
    return [d for d in result.diagnostics.sorted() if d.severity == "error" and (code is None or d.code == code)]


def test_a_judge_cell_reads_the_generator_cells_of_its_language(tmp_path, in_dir):
    result = compile_text(tmp_path, in_dir, GENERATE + JUDGE)
    assert result.ok, result.text
    plan = result.data
    assert plan["datasets"]["answers"]["format"] == "responses" and plan["datasets"]["answers"]["study"] == "gen"
    assert plan["datasets"]["answers"]["fields"]["generator"] == {"source": "model"}
    gen = {c["id"]: c for c in plan["cells"] if c["study"] == "gen"}
    judge = [c for c in plan["cells"] if c["study"] == "judge"]
    assert len(gen) == 6 and len(judge) == 3
    for cell in judge:
        lang = cell["axes"]["language"]
        assert cell["reads"] == sorted(i for i, g in gen.items() if g["axes"]["language"] == lang)
        # Each generation of the two models is one item to judge.
        assert cell["items"] == 4 and cell["estimate"]["requests"] == 4
    assert all("reads" not in c for c in gen.values())


def test_an_upstream_edit_is_a_new_downstream_cell_and_a_rubric_edit_is_not_upstream(tmp_path, in_dir):
    base = compile_text(tmp_path, in_dir, GENERATE + JUDGE).data
    ids = lambda plan, study: {c["axes"]["language"] + c["axes"]["model"]: c["id"] for c in plan["cells"] if c["study"] == study}  # noqa: E731
    edited_gen = compile_text(tmp_path, in_dir, GENERATE.replace('en = "{question}"', 'en = "Please answer: {question}"') + JUDGE).data
    changed = {k for k, v in ids(edited_gen, "gen").items() if ids(base, "gen")[k] != v}
    assert changed == {"enwriter", "enother"}
    # The English judge cell reads the new generations: a new cell; the others stay.
    assert {k for k, v in ids(edited_gen, "judge").items() if ids(base, "judge")[k] != v} == {"enjudge_model"}
    edited_rubric = compile_text(tmp_path, in_dir, GENERATE.replace("Rate the answer from 0 to 4.", "Score it from 0 to 4.") + JUDGE).data
    assert ids(edited_rubric, "gen") == ids(base, "gen")
    assert {k for k, v in ids(edited_rubric, "judge").items() if ids(base, "judge")[k] != v} == {"enjudge_model"}


def test_a_chain_of_three_stages(tmp_path, in_dir):
    meta = """framing recheck { en = "Is this rating fair? {response}"  fr = "Note juste ? {response}"  et = "Kas hinne on õiglane? {response}" }
dataset verdicts = responses(judge) { rater = model }
study meta {
  model = writer
  dataset = verdicts
  language = [en, fr, et]
  framing = recheck
  answer = generate
}
"""
    result = compile_text(tmp_path, in_dir, GENERATE + JUDGE + meta)
    assert result.ok, result.text
    cells = {c["id"]: c for c in result.data["cells"]}
    meta_cells = [c for c in cells.values() if c["study"] == "meta"]
    assert len(meta_cells) == 3
    for c in meta_cells:
        (read,) = c["reads"]
        assert cells[read]["study"] == "judge" and cells[read]["axes"]["language"] == c["axes"]["language"]
        assert c["items"] == 4  # one judgement per generation
    # The upstream item's fields travel down the chain.
    assert "question" in result.data["datasets"]["verdicts"]["fields"]


def test_a_response_dataset_naming_no_study(tmp_path, in_dir):
    result = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("responses(gen)", "responses(gne)"))
    (d,) = errors(result, "E003")
    assert d.message == "undefined study `gne`" and d.hint == "did you mean `gen`?"
    assert (d.span.line, d.span.col) == (GENERATE.count("\n") + 1, 29)


def test_a_study_reading_its_own_responses_is_a_cycle(tmp_path, in_dir):
    loop = JUDGE.replace("dataset = answers", "dataset = [answers, again]") + "dataset again = responses(judge)\n"
    result = compile_text(tmp_path, in_dir, GENERATE + loop)
    (d,) = errors(result, "E020")
    assert d.message == "study `judge` reads its own responses: dataset `again` (responses of study `judge`) -> dataset `again`"
    two = GENERATE.replace("dataset = prompts", "dataset = back") + JUDGE + "dataset back = responses(judge)\n"
    result = compile_text(tmp_path, in_dir, two)
    found = errors(result, "E020")
    assert len(found) == 1, result.text
    assert "dataset `answers` (responses of study `gen`) -> dataset `back` (responses of study `judge`) -> dataset `answers`" in found[0].message


def test_an_upstream_study_that_generates_no_text(tmp_path, in_dir):
    text = GENERATE.replace("answer = generate\n", "answer = options\n")
    text = text.replace("question = question[lang] }", "question = question[lang]  options = opts  gold = gold }")
    for lang in ("en", "fr", "et"):
        text = text.replace(f'{lang} = "{{question}}"', f'{lang} = "{{question}}\\n{{options}}"')
    result = compile_text(tmp_path, in_dir, text + JUDGE, rows=[dict(r, opts=["a", "b"], gold="A") for r in ROWS])
    (d,) = errors(result)
    assert d.code == "E014" and d.message == "study `gen` generates no text for dataset `answers` to read: its answers are options"


def test_a_language_the_upstream_study_does_not_ask(tmp_path, in_dir):
    text = GENERATE + JUDGE.replace("language = [en, fr, et]", "language = [en, fr, et, de]").replace('framing = rubric', 'framing = rubric2')
    text += 'framing rubric2 { en = "{response}"  fr = "{response}"  et = "{response}"  de = "{response}" }\n'
    result = compile_text(tmp_path, in_dir, text)
    (d,) = errors(result, "E017")
    assert d.message == "dataset `answers` (the responses of study `gen`) has no items in `de`, a language of study `judge`"
    partial = compile_text(tmp_path, in_dir, text.replace("framing = rubric2", "framing = rubric2\n  coverage = partial"))
    assert partial.ok and [x.code for x in partial.diagnostics.sorted()] == ["E017"]


def test_an_upstream_column_that_does_not_exist(tmp_path, in_dir):
    result = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("generator = model", "generator = framng"))
    (d,) = errors(result, "E011")
    assert d.message == "the responses of study `gen` have no column `framng`" and d.hint == "did you mean `framing`?"


def test_a_placeholder_the_responses_do_not_have(tmp_path, in_dir):
    result = compile_text(tmp_path, in_dir, GENERATE.replace("Rate the answer from 0 to 4.", "Rate {answer}.") + JUDGE)
    assert [d.code for d in errors(result)] == ["E006"], result.text


def test_a_plan_whose_reads_were_edited_is_refused(tmp_path, in_dir):
    result = compile_text(tmp_path, in_dir, GENERATE + JUDGE)
    data = result.data
    judge = next(c for c in data["cells"] if c["study"] == "judge")
    judge["reads"] = [next(c["id"] for c in data["cells"] if c["study"] == "judge")]
    path = tmp_path / "edited.plan.json"
    path.write_text(dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match="reads cell|does not match its content"):
        planmod.verify(planmod.load(str(path)))


# ---- property: any chain of studies compiles to a DAG, the same bytes every time ----------


@st.composite
def chains(draw):
    """Studies s0..sN: s0 reads the data file; each later one reads the responses of a random
    earlier study (or the data file), in random languages of those its source asks."""
    n = draw(st.integers(1, 5))
    langs = ["en", "fr", "et"]
    asked: list[list[str]] = []
    lines = []
    for i in range(n):
        source = draw(st.integers(-1, i - 1)) if i else -1
        pool = langs if source < 0 else asked[source]
        mine = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
        asked.append(mine)
        if source < 0:
            dataset, field = "prompts", "{question}"
        else:
            dataset, field = f"r{i}", "{response}"
            lines.append(f"dataset r{i} = responses(s{source})")
        templates = "  ".join(f'{lang} = "S{i} {field}"' for lang in langs)
        lines.append(f"framing f{i} {{ {templates} }}")
        lines.append(f"study s{i} {{ model = writer  dataset = {dataset}  language = [{', '.join(mine)}]  framing = f{i}  answer = generate }}")
    return GENERATE.split("study gen")[0] + "\n".join(lines) + "\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains())
def test_any_chain_of_studies_compiles_to_a_dag_with_stable_ids(tmp_path, in_dir, text):
    first = compile_text(tmp_path, in_dir, text)
    assert first.ok, first.text
    order = {c["id"]: i for i, c in enumerate(first.data["cells"])}
    by_id = {c["id"]: c for c in first.data["cells"]}
    # Every read names a cell of the study the dataset reads, in the cell's language; the
    # depth of each cell is finite (no cycle).
    depth: dict[str, int] = {}
    for c in sorted(first.data["cells"], key=lambda c: int(c["study"][1:])):
        upstream = first.data["datasets"][c["axes"]["dataset"]].get("study")
        for r in c.get("reads", []):
            assert r in order and by_id[r]["study"] == upstream and by_id[r]["axes"]["language"] == c["axes"]["language"]
        depth[c["id"]] = 1 + max((depth[r] for r in c.get("reads", [])), default=-1)
    assert all(d <= 5 for d in depth.values())
    again = compile_text(tmp_path, in_dir, text)
    assert dumps(again.data) == dumps(first.data)


def test_diff_names_the_judge_cells_an_edit_changes(tmp_path, in_dir):
    from xlspec.diff import diff_plans, render_diff_text
    from xlspec.plan import Plan

    base = compile_text(tmp_path, in_dir, GENERATE + JUDGE).data
    edited = compile_text(tmp_path, in_dir, GENERATE.replace('fr = "{question}"', 'fr = "Répondez : {question}"') + JUDGE).data
    d = diff_plans(Plan.from_data(base), Plan.from_data(edited))
    # the two French generations and the French judge cell that reads them
    assert sorted((c.study, c.axes["language"]) for c in d.changed) == [("gen", "fr"), ("gen", "fr"), ("judge", "fr")]
    assert d.reads_upstream and not d.exact
    assert "estimated: changed cells read responses of cells that have not run yet" in render_diff_text(d, "a", "b")


def test_what_a_response_dataset_offers_and_refuses(tmp_path, in_dir):
    # an upstream item field named like a row column (prompt) or a list field (options) is
    # not offered; a filter may read the names the block gives; the pool is a data file
    text = GENERATE.replace("question = question[lang] }", "question = question[lang]  prompt = question[lang] }")
    result = compile_text(tmp_path, in_dir, text + JUDGE.replace("  answer = generate(parser", '  where = generator == "writer"\n  answer = generate(parser'))
    assert result.ok, result.text
    fields = result.data["datasets"]["answers"]["fields"]
    assert fields["prompt"] == {"source": "prompt"} and "options" not in fields
    bad = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("  answer = generate(parser", '  where = genrator == "writer"\n  answer = generate(parser'))
    (d,) = errors(bad, "E011")
    assert d.message == "where: the items of dataset `answers` have no field `genrator`" and d.hint == "did you mean `generator`?"
    pool = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("  answer = generate(parser", "  fewshot = answers\n  shots = 1\n  answer = generate(parser"))
    assert any(x.message == "the few-shot pool is a data file, and `answers` is the responses of study `gen`" for x in errors(pool)), pool.text


def test_a_judge_study_ranks_and_groups_by_the_generator(tmp_path, in_dir):
    """The upstream axes a response dataset maps (``generator = model``) are axes the judge's
    metrics can rank (``rank = generator``) and group by; a per-item metric with arguments
    can be ranked (``rank_stability(mean(fluency), ...)``)."""
    judge = JUDGE.replace('answer = generate(parser = regex("([0-4])"))', 'answer = generate(parser = json_scores(fields = [fluency], min = 0, max = 4))\n  metrics = [mean(fluency, by = [generator, language]), rank_stability(mean(fluency), rank = generator, language = en - et)]')
    result = compile_text(tmp_path, in_dir, GENERATE + judge)
    assert result.ok, result.text
    metrics = result.data["studies"]["judge"]["metrics"]
    assert metrics[0]["by"] == ["generator", "language"]
    assert metrics[1]["args"] == {"metric": {"name": "mean", "args": {"field": "fluency"}}, "pair": {"axis": "language", "a": "en", "b": "et"}, "rank": "generator"}
    assert metrics[1]["label"] == "rank_stability(metric=mean(field=fluency), rank=generator, language=en-et)"
    # a study that reads data files has no generator axis
    gen = GENERATE.replace("  answer = generate\n", "  answer = generate\n  metrics = [rank_stability(accuracy, rank = generator, language = en - et)]\n")
    bad = compile_text(tmp_path, in_dir, gen)
    assert "error[E008]: `rank_stability`: `generator` is not an axis of this study" in bad.text, bad.text
    # the ranked metric is checked like any other
    typo = compile_text(tmp_path, in_dir, GENERATE + judge.replace("rank_stability(mean(fluency)", "rank_stability(mean(fluncy)"))
    assert "fluncy" in typo.text and not typo.ok, typo.text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("responses(gen, pair = modle)", "error[E014]: `pair` names an upstream axis whose values are paired; `modle` is not one"),
        ("responses(gen, pair = language)", "`language` is not one"),
        ("responses(gen, pairs = model)", "error[E014]: `responses` takes no argument `pairs`"),
    ],
)
def test_pair_mistakes_are_located(tmp_path, in_dir, call, message):
    result = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("responses(gen)", call))
    assert message in result.text and "stages.xls:" in result.text, result.text


def test_a_paired_response_dataset_offers_each_side(tmp_path, in_dir):
    """With ``pair = model`` an item is two responses: `{response}` is gone, `{response_a}`,
    `{response_b}` and `generator_a`, `generator_b` are there."""
    paired = JUDGE.replace("responses(gen)", "responses(gen, pair = model)")
    result = compile_text(tmp_path, in_dir, GENERATE + paired)
    assert "placeholder `{response}` in framing `rubric` has no source" in result.text, result.text
    ok = compile_text(tmp_path, in_dir, (GENERATE + paired).replace("{response}", "{response_a} / {response_b}"))
    assert ok.ok, ok.text
    fields = ok.data["datasets"]["answers"]["fields"]
    assert {k: v["source"] for k, v in fields.items() if k.endswith(("_a", "_b"))} == {
        "generator_a": "model@a", "generator_b": "model@b", "response_a": "response@a", "response_b": "response@b",
        "parsed_answer_a": "parsed_answer@a", "parsed_answer_b": "parsed_answer@b", "request_id_b": "request_id@b",
    }
    assert ok.data["datasets"]["answers"]["pair"] == "model"
    # two writers x one pair per prompt: 2 prompts x 3 languages = 6 judge requests
    plan = planmod.Plan.from_data(ok.data)
    assert sum(c.estimate.requests for c in plan.cells if c.study == "judge") == 6


def test_pairing_needs_two_values_and_names_clear_of_the_results(tmp_path, in_dir):
    one = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("responses(gen)", "responses(gen, pair = framing)"))
    assert "error[E014]: study `gen` has one `framing`: dataset `answers` pairs its responses by `framing`, and there is nothing to pair" in one.text, one.text
    twice = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("responses(gen)", "responses(gen, pair = model, pair = framing)"))
    assert "error[E014]: `pair` is given twice" in twice.text, twice.text
    clash = compile_text(tmp_path, in_dir, GENERATE + JUDGE.replace("{ generator = model }", "{ engine = model }"))
    assert "error[E014]: `engine` is a column of the results; the upstream `model` needs a name of its own" in clash.text, clash.text
