"""The checker's passes: what they accept and reject beyond the golden diagnostics, and the
vocabulary tables the language reference is built from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from xlspec.check import check_file
from xlspec.diagnostics import render_text

QUESTIONS = [
    {"id": "q1", "question": {"en": "2 + 2?", "fr": "2 + 2 ?"}, "options": {"en": ["3", "4"], "fr": ["3", "4"]}, "answer": "B"},
    {"id": "q2", "question": {"en": "Sky?", "fr": "Ciel ?"}, "options": {"en": ["Blue", "Green"], "fr": ["Bleu", "Vert"]}, "answer": "A"},
]

HEAD = """\
experiment t "Checker test"
dataset qa = jsonl("qa.jsonl") { id = id  question = question[lang]  options = options[lang]  gold = answer }
framing plain { en = "{question}\\n{options}"  fr = "{question}\\n{options}" }
model smol = hf("builtin:smollm2-135m-instruct")
"""


def study(language: str = "[en, fr]", answer: str | None = None, metrics: str | None = None, model: str = "smol") -> str:
    lines = [f"  model = {model}", "  dataset = qa", f"  language = {language}", "  framing = plain"]
    if answer:
        lines.append(f"  answer = {answer}")
    if metrics:
        lines.append(f"  metrics = {metrics}")
    return "study main {\n" + "\n".join(lines) + "\n}\n"


@pytest.fixture
def check(tmp_path, in_dir):
    """Check a spec written to a temporary folder next to a small dataset; returns the
    result and its diagnostics as text."""
    with open(tmp_path / "qa.jsonl", "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(q) + "\n" for q in QUESTIONS))

    def run(text: str):
        (tmp_path / "t.xls").write_text(textwrap.dedent(text), encoding="utf-8")
        with in_dir(tmp_path):
            result = check_file("t.xls")
            return result, render_text(result.diagnostics.sorted(), result.sources)

    return run


def errors(result) -> list[tuple[str, str, int, int]]:
    return [(d.code, d.message, d.span.line if d.span else 0, d.span.col if d.span else 0) for d in result.diagnostics.sorted()]


# ---- groups before language sets -------------------------------------------------------------


def test_language_set_built_from_a_group(check):
    result, text = check(HEAD + "group pair = [en, fr]\nlanguages eu = pair\n" + study(language="eu"))
    assert result.spec is not None, text
    assert result.spec.studies["main"].languages == {"": ["en", "fr"]}


def test_study_languages_from_a_group_and_set_algebra(check):
    result, text = check(HEAD + "group pair = [en, fr]\nlanguages eu = pair - [fr]\n" + study(language="eu + pair"))
    assert result.spec is not None, text
    assert result.spec.studies["main"].languages == {"": ["en", "fr"]}


def test_language_set_from_a_group_of_other_names_is_located(check):
    result, text = check(HEAD + "group models = [smol, qwen_big]\nlanguages eu = models\n" + study(language="eu"))
    assert result.spec is None
    found = errors(result)
    # Each member is reported once, where the group names it (line 5), although the set and
    # the study both use it.
    assert [(code, line, col) for code, _, line, col in found] == [("E002", 5, 17), ("E002", 5, 23)], text
    assert "unknown language code `smol`" in text and "unknown language code `qwen_big`" in text
    assert "has no languages" not in text


def test_group_that_contains_itself_is_an_error_not_a_crash(check):
    result, text = check(HEAD + "group a = [smol, b]\ngroup b = [a]\n" + study(model="a"))
    assert result.spec is None
    assert [(c, m) for c, m, _, _ in errors(result)] == [
        ("E013", "group `a` is defined in terms of itself"),
        ("E013", "group `b` is defined in terms of itself"),
    ], text


def test_groups_of_models_expand_in_studies(check):
    result, text = check(HEAD + 'model big = vllm("org/big")\ngroup both = [smol, big]\ngroup all = [both]\n' + study(model="all"))
    assert result.spec is not None, text
    assert result.spec.studies["main"].models == ["smol", "big"]


# ---- engines and answer kinds ----------------------------------------------------------------


@pytest.fixture
def text_only_engine():
    from xlspec.runtime.engines import ENGINES, EngineInfo

    ENGINES.names()  # load the registered engines first
    info = EngineInfo(name="textonly", summary="generates text only (test)", load=lambda config: None, answers=frozenset({"generate"}))
    ENGINES.register(info.name, info)
    try:
        yield info
    finally:
        del ENGINES._entries[info.name]


def test_engine_that_cannot_serve_an_answer_kind(check, text_only_engine):
    spec = HEAD + 'model tiny = textonly("org/tiny")\n' + study(model="[smol, tiny]", answer="options + generate")
    result, text = check(spec)
    assert result.spec is None
    assert [(c, m, line) for c, m, line, _ in errors(result)] == [
        ("E009", "model `tiny` runs on engine `textonly`, which cannot serve answer kind `options`", 7),
    ], text
    from xlspec.runtime.engines import ENGINES

    serving = [name for name, e in ENGINES.items() if "options" in e.answers]
    assert {"hf", "vllm"} <= set(serving) and "textonly" not in serving
    assert f"engines that serve `options`: {', '.join(serving)}" in text


def test_engine_serving_the_answer_kinds_compiles(check, text_only_engine):
    result, text = check(HEAD + 'model tiny = textonly("org/tiny")\n' + study(model="tiny", answer="generate"))
    assert result.spec is not None, text
    assert result.spec.models["tiny"].engine == "textonly"


def test_unknown_engine_suggests_a_registered_one(check):
    result, text = check(HEAD.replace('hf("builtin', 'hff("builtin') + study())
    assert result.spec is None
    assert 'a model is an engine and a source: hf("org/name"), openai("model-name"), vllm("org/name"), or hf("builtin:smollm2-135m-instruct")' in text
    assert "did you mean `hf`?" in text


# ---- parsers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parser, expected",
    [
        ("option_letter", ("option_letter", None)),
        ("last_option_letter", ("last_option_letter", None)),
        ("last_option_number", ("last_option_number", None)),
        ("json(answer)", ("json", {"field": "answer"})),
        ("json(verdict.score)", ("json", {"field": "verdict.score"})),
        ('json("a.b")', ("json", {"field": "a.b"})),
        ("json(field = answer)", ("json", {"field": "answer"})),
        (r'regex("\\boxed\\{([^}]*)\\}")', ("regex", {"pattern": r"\boxed\{([^}]*)\}"})),
    ],
)
def test_parsers_and_their_arguments(check, parser, expected):
    result, text = check(HEAD + study(answer=f"generate(parser = {parser})"))
    assert result.spec is not None, text
    (answer,) = result.spec.studies["main"].answers
    assert (answer.parser, answer.parser_args) == expected
    if expected[1] is None:
        assert "parser_args" not in answer.model_dump(exclude_none=True)


def test_regex_that_does_not_compile_is_located_at_the_pattern(check):
    result, text = check(HEAD + study(answer='generate(parser = regex("([a-"))'))
    assert result.spec is None
    ((code, message, line, col),) = errors(result)
    assert code == "E014" and message.startswith("parser `regex`: the pattern does not compile"), text
    assert (line, col) == (10, 36)


@pytest.mark.parametrize(
    "parser, message",
    [
        ("json", "parser `json` needs `field`: json(field = ...)"),
        ("regex(3)", "parser `regex`: `pattern` is a string"),
        ('regex("a", "b")', "parser `regex` takes 1 argument(s) (pattern), got 2"),
        ('regex(patern = "a")', "parser `regex` has no argument `patern`"),
        ("option_letter(strict = true)", "parser `option_letter` has no argument `strict`"),
        ("letters", "unknown answer parser `letters`"),
    ],
)
def test_parser_argument_errors(check, parser, message):
    result, text = check(HEAD + study(answer=f"generate(parser = {parser})"))
    assert result.spec is None
    assert [m for _, m, _, _ in errors(result)] == [message], text


@pytest.mark.parametrize("parser, ok", [("option_letter", True), ("last_option_number", True), ('regex("(\\\\d)")', True), ("json(a)", True), ("text", False), ("first_line", False)])
def test_refusals_need_a_parser_that_can_refuse(check, parser, ok):
    result, text = check(HEAD + study(answer=f"generate(parser = {parser})", metrics="[refusal_rate]"))
    assert (result.spec is not None) == ok, text
    if not ok:
        assert "`refusal_rate` cannot be computed for this study: it needs an answer parser that can refuse" in text


# ---- metrics ---------------------------------------------------------------------------------


def test_metric_labels_and_defaults(check):
    metrics = "[accuracy, consistency(over = language), parity_gap(accuracy), logit_leakage, pivot_delta(accuracy, pivot = fr)]"
    result, text = check(HEAD + study(answer="options + generate(parser = option_letter)", metrics=metrics))
    assert result.spec is not None, text
    got = [(m.label, m.args) for m in result.spec.studies["main"].metrics]
    assert got == [
        ("accuracy", {}),
        ("consistency(over=language)", {"over": "language"}),
        ("parity_gap(metric=accuracy)", {"metric": "accuracy"}),
        ("logit_leakage", {"threshold": 0.5}),
        ("pivot_delta(metric=accuracy, pivot=fr)", {"metric": "accuracy", "pivot": "fr"}),
    ]


def test_metric_field_argument_is_checked_against_its_choices(check):
    result, text = check(HEAD + study(answer="generate(parser = option_letter)", metrics="[mean(field = latency_ms)]"))
    assert result.spec is not None, text
    assert result.spec.studies["main"].metrics[0].args == {"field": "latency_ms"}
    result, text = check(HEAD + study(answer="generate(parser = option_letter)", metrics="[mean(field = latency)]"))
    assert result.spec is None and "`mean`: `latency` is not a field it can read" in text and "did you mean `latency_ms`?" in text


def test_pivot_language_that_is_not_a_name_is_reported(check):
    result, text = check(HEAD + study(metrics='[pivot_delta(accuracy, pivot = "en")]'))
    assert result.spec is None and "`pivot_delta`: `pivot` is a language code" in text


# ---- registries, not lists -------------------------------------------------------------------


def test_model_and_mode_settings_come_from_the_spec_models():
    from xlspec.check.framings import MODE_SETTINGS
    from xlspec.check.models import MODEL_SETTINGS
    from xlspec.spec import ModelSpec, ModeSpec

    assert MODEL_SETTINGS == tuple(ModelSpec.settings())
    assert MODE_SETTINGS == tuple(ModeSpec.model_fields)


def test_checker_reads_registries_not_the_metric_catalog():
    code = (
        "import sys; from xlspec.cli import main\n"
        "try:\n  main(['compile', '--check', 'specs/demo.xls'])\nexcept SystemExit as e:\n  assert not e.code\n"
        "print('LOADED', sorted(m for m in ('xlspec.metric_catalog', 'numpy', 'pandas') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "LOADED []" in r.stdout, r.stdout + r.stderr


def test_checker_sources_name_no_literal_lists_of_registered_things():
    folder = os.path.join(ROOT, "xlspec", "check")
    text = "".join(open(os.path.join(folder, f), encoding="utf-8").read() for f in sorted(os.listdir(folder)) if f.endswith(".py"))
    assert "metric_catalog" not in text
    for literal in ('("hf", "vllm")', '("generate", "options", "loglik")', '"option_number", "option_letter", "text"', 'startswith(("option"'):
        assert literal not in text, literal


# ---- vocabulary ------------------------------------------------------------------------------


def test_vocabulary_tables():
    from xlspec.axes import CELL_AXES
    from xlspec.check.vocabulary import DATASET_FIELDS, DECLARATIONS, KINDS, STUDY_SETTINGS
    from xlspec.items import SPECIAL_FIELDS

    assert set(DATASET_FIELDS) == SPECIAL_FIELDS
    assert list(KINDS) == list(DECLARATIONS)
    assert {a.setting or a.name for a in CELL_AXES} <= set(STUDY_SETTINGS)
    for table in (KINDS, STUDY_SETTINGS, DATASET_FIELDS):
        for name, summary in table.items():
            assert summary and "\n" not in summary and not summary.endswith("."), name


def test_vocabulary_imports_without_loading_registries():
    code = (
        "import sys; import xlspec.check.vocabulary as v; from xlspec.runtime.metrics.registry import METRICS; "
        "from xlspec.parsers import PARSERS; "
        "print('STATE', METRICS._loaded, PARSERS._loaded, sorted(m for m in ('xlspec.runtime.engines', 'numpy', 'pandas', 'torch') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "STATE False False []" in r.stdout, r.stdout + r.stderr


# ---- messages a user can act on -----------------------------------------------------------


def test_did_you_mean_only_for_near_names():
    from xlspec.diagnostics import suggest

    assert suggest("train", ["framing", "model", "language"]) is None
    assert suggest("acuracy", ["accuracy", "agreement"]) == "accuracy"
    assert suggest("langauge", ["language", "lang"]) == "language"
    assert suggest("latency", ["latency_ms", "prompt_tokens"]) == "latency_ms"


def test_unknown_study_setting_far_from_every_name_gets_the_list_not_a_guess(check):
    result, text = check(HEAD + study().replace("  framing = plain", "  framing = plain\n  train = 3"))
    assert "unknown study setting `train`" in text and "did you mean" not in text


@pytest.mark.parametrize(
    "answer, message",
    [
        ("generate(parser = [option_letter, regex])", "an answer kind has one parser, not a list"),
        ('generate(parser = "option_letter")', "a parser is a name"),
        ("options + options", "answer kind `options` is given twice"),
        ("generate(option_letter)", "`generate` takes its arguments by name"),
        ("loglik(normalize = 1)", "`loglik`'s `normalize` is one of none, chars, bytes, tokens"),
        # `true` once meant per token, where lm-eval's acc_norm is per character
        ("loglik(normalize = true)", "`loglik`'s `normalize` names how: none, chars, bytes, tokens"),
        ("loglik(normalize = char)", "did you mean `chars`?"),
        ("loglik(separator = newline)", "`loglik`'s `separator` is a string in quotes"),
        ("loglik + loglik(normalize = none)", "answer kind `loglik` is given twice"),
        ("loglik + loglik(separator = \"\\n\")", "two loglik answers of this study read their answers the same way"),
    ],
)
def test_answer_kind_mistakes_are_named(check, answer, message):
    result, text = check(HEAD + study(answer=answer))
    assert result.spec is None and message in text, text


def test_two_parsers_are_two_answer_kinds(check):
    result, text = check(HEAD + study(answer="generate(parser = option_letter) + generate(parser = last_option_letter)"))
    assert result.spec is not None, text
    assert [a.parser for a in result.spec.studies["main"].answers] == ["option_letter", "last_option_letter"]


@pytest.mark.parametrize(
    "block, message",
    [
        ("mode m { top_p = 0 }", "`top_p` is a number above 0 and at most 1"),
        ("mode m { temperature = 3 }", "`temperature` is a number from 0 to 2"),
        ('model m2 = hf("builtin:smollm2-135m-instruct") { dtype = "floaty" }', "`dtype` is one of auto, float32, bfloat16, float16"),
        ('model m2 = hf("builtin:smollm2-135m-instruct") { batch_size = 0 }', "`batch_size` is a whole number >= 1"),
    ],
)
def test_setting_errors_name_the_setting(check, block, message):
    result, text = check(HEAD + block + "\n" + study())
    assert result.spec is None and message in text, text


@pytest.mark.parametrize(
    "language, metrics, message",
    [
        ("[en]", "[parity_gap(accuracy)]", "`parity_gap` compares languages, and this study has one: en"),
        ("[en]", "[consistency(over = language)]", "`consistency` compares languages, and this study has one: en"),
        ("[en, fr]", "[rank_stability(accuracy, language = en - fr)]", "`rank_stability` compares models, and this study has one: smol"),
        ("[en, fr]", "[delta(accuracy, language = fr - fr)]", "`delta` compares `fr` with itself"),
    ],
)
def test_a_comparison_needs_two_things_to_compare(check, language, metrics, message):
    result, text = check(HEAD + study(language=language, metrics=metrics))
    assert result.spec is None and message in text, text


def test_a_missing_data_file_is_the_one_error(check):
    """Not also `accuracy needs gold answers`: the mapping says gold is there."""
    result, text = check(HEAD.replace("qa.jsonl", "missing.jsonl") + study(metrics="[accuracy]"))
    assert result.spec is None
    assert "missing.jsonl" in text and "needs" not in text, text


def test_an_undefined_dataset_is_the_one_error_of_its_study(check):
    """Not also every placeholder of the framing, which a study with data would fill."""
    result, text = check(HEAD + study().replace("dataset = qa", "dataset = qaa"))
    assert [e[0] for e in errors(result)] == ["E003"], text


def test_a_framing_error_found_for_two_studies_is_reported_once(check):
    spec = HEAD.replace('en = "{question}', 'en = "{qestion}') + study() + study().replace("study main", "study second")
    result, text = check(spec)
    (e006,) = [d for d in result.diagnostics if d.code == "E006"]
    assert e006.notes == ["as used by study `main`", "as used by study `second`"], text


# ---- a framing's default template ------------------------------------------------------------


def test_a_default_template_is_the_same_plan_as_writing_it_out(check, in_dir, tmp_path):
    from xlspec.api import compile_file

    shared = '"{question}\\n{options}\\nAnswer:"'
    written = HEAD.replace('framing plain { en = "{question}\\n{options}"  fr = "{question}\\n{options}" }', f"framing plain {{ en = {shared}  fr = {shared} }}")
    defaulted = HEAD.replace('framing plain { en = "{question}\\n{options}"  fr = "{question}\\n{options}" }', f"framing plain {{ default = {shared} }}")
    assert written != HEAD and defaulted != HEAD
    plans = []
    for text in (written, defaulted):
        result, diagnostics = check(text + study(answer="options"))
        assert result.spec is not None, diagnostics
        with in_dir(tmp_path):
            plans.append(compile_file("t.xls").plan)
    ids = [[c.id for c in p.cells] for p in plans]
    assert ids[0] == ids[1] and ids[0]
    # without `default`, a missing language is still an error
    result, text = check(HEAD.replace('  fr = "{question}\\n{options}" }', " }") + study(answer="options"))
    assert "framing `plain` has no template for fr" in text and 'default = "..."' in text
