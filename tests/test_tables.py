"""Datasets that are tables: Parquet files, and hub datasets read through the ``datasets``
library, here from a folder laid out as a hub repository (data files plus a dataset card
declaring one config per language), which ``datasets.load_dataset`` reads with the same call
as a hub id.  Offline with no cached copy, a hub id is a located error saying what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xlspec import plan as planmod
from xlspec.api import compile_file
from xlspec.diagnostics import render_text

ITEMS = {
    "en": [("q1", "What is two plus two?", ["3", "4"], "B", "math"), ("q2", "Which is a colour?", ["blue", "bread"], "A", "art"), ("q3", "Which animal barks?", ["dog", "cat"], "A", "nature")],
    "fr": [("q1", "Combien font deux plus deux ?", ["3", "4"], "B", "math"), ("q2", "Lequel est une couleur ?", ["bleu", "pain"], "A", "art")],
    "de": [("q1", "Was ist zwei plus zwei?", ["3", "4"], "B", "math"), ("q3", "Welches Tier bellt?", ["Hund", "Katze"], "A", "nature")],
}

CARD = """---
configs:
{configs}
---
# A tiny multilingual quiz, laid out as a hub dataset: one config per language.
"""


def write_repo(folder, items=ITEMS) -> None:
    configs = []
    for lang, rows in items.items():
        os.makedirs(folder / "data" / lang, exist_ok=True)
        with open(folder / "data" / lang / "test.jsonl", "w", encoding="utf-8") as f:
            for i, (item_id, q, opts, gold, subject) in enumerate(rows):
                f.write(json.dumps({"sample_id": item_id, "question": q, "choices": opts, "answer": gold, "subject": subject}, ensure_ascii=False) + "\n")
        configs.append(f"- config_name: {lang}\n  data_files:\n  - split: test\n    path: data/{lang}/test.jsonl")
    (folder / "README.md").write_text(CARD.format(configs="\n".join(configs)), encoding="utf-8")


def spec(source: str, languages: str = "en, fr, de", extra_study: str = "", fields: str = "") -> str:
    return f"""experiment tables "Datasets that are tables"

languages langs = [{languages}]

dataset quiz = {source} {{
  id = sample_id
  question = question
  options = choices
  gold = answer
  subject = subject
  {fields}
}}

framing plain {{
  en = "{{question}}\\n{{options}}\\nAnswer:"
  fr = "{{question}}\\n{{options}}\\nRéponse :"
  de = "{{question}}\\n{{options}}\\nAntwort:"
  sw = "{{question}}\\n{{options}}\\nJibu:"
}}

model m = hf("builtin:smollm2-135m-instruct")

study s {{
  model = m
  dataset = quiz
  language = langs
  framing = plain
  answer = options
  metrics = [accuracy]
  coverage = partial
{extra_study}
}}
"""


def compile_text(folder, text: str):
    path = folder / "tables.xls"
    path.write_text(text, encoding="utf-8")
    c = compile_file(str(path), str(folder / "build"))
    return c, render_text(c.diagnostics.sorted(), c.sources)


def items_per_language(data: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for cell in data["cells"]:
        out[cell["axes"]["language"]] = out.get(cell["axes"]["language"], 0) + cell["items"]
    return out


@pytest.mark.parametrize("config", ['"{lang}"', '{ en: "en", fr: "fr", de: "de" }'])
def test_a_hub_layout_with_a_config_per_language(tmp_path, config):
    write_repo(tmp_path / "quiz_repo")
    c, text = compile_text(tmp_path, spec(f'hf("./quiz_repo", config = {config}, split = "test")'))
    assert c.ok, text
    entry = c.data["datasets"]["quiz"]
    assert entry["format"] == "hf" and entry["path"] == "quiz_repo" and entry["configs"] == {"de": "de", "en": "en", "fr": "fr"}
    assert entry["split"] == "test" and entry["records"] == 7 and entry["fields"]["language"] == {"source": "_config_language"}
    assert items_per_language(c.data) == {"en": 3, "fr": 2, "de": 2}
    # the same data compiles to the same bytes
    again, _ = compile_text(tmp_path, spec(f'hf("./quiz_repo", config = {config}, split = "test")'))
    assert json.dumps(again.data, sort_keys=True) == json.dumps(c.data, sort_keys=True)


def test_a_lang_pattern_reads_only_the_configs_there_are(tmp_path):
    write_repo(tmp_path / "quiz_repo")
    c, text = compile_text(tmp_path, spec('hf("./quiz_repo", config = "{lang}", split = "test")', languages="en, fr, de, sw"))
    assert c.ok, text
    assert c.data["datasets"]["quiz"]["configs"] == {"de": "de", "en": "en", "fr": "fr"}
    assert "dataset `quiz` has no items in `sw`" in text  # the coverage check names the missing language


def test_the_plan_goes_stale_when_the_hub_data_changes(tmp_path):
    from xlspec.runtime.scheduler import StalePlan, run_plan

    write_repo(tmp_path / "quiz_repo")
    c, text = compile_text(tmp_path, spec('hf("./quiz_repo", config = "{lang}", split = "test")'))
    assert c.ok, text
    path = str(tmp_path / "build" / "tables.plan.json")
    planmod.write(c.data, path)
    assert planmod.stale_inputs(planmod.load(path), path) == []
    changed = dict(ITEMS, fr=[("q1", "Combien font deux et deux ?", ["3", "4"], "B", "math")])
    write_repo(tmp_path / "quiz_repo", changed)
    stale = planmod.stale_inputs(planmod.load(path), path)
    assert stale == ["dataset `quiz` (quiz_repo)"]
    with pytest.raises(StalePlan, match="quiz"):
        run_plan(path, runs_dir=str(tmp_path / "runs"))


def test_a_parquet_file_and_its_bad_rows(tmp_path):
    rows = [{"sample_id": i, "question": q, "choices": o, "answer": g, "subject": s} for i, q, o, g, s in ITEMS["en"]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "quiz.parquet")
    c, text = compile_text(tmp_path, spec('parquet("quiz.parquet")', languages="en"))
    assert c.ok, text
    assert c.data["datasets"]["quiz"]["format"] == "parquet" and c.data["datasets"]["quiz"]["records"] == 3
    bad = rows + [{"sample_id": "q4", "question": "Pick one", "choices": ["a", "b"], "answer": "E", "subject": "x"}]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "quiz.parquet")
    c, text = compile_text(tmp_path, spec('parquet("quiz.parquet")', languages="en"))
    assert not c.ok
    assert "quiz.parquet: row 4: error[E015]" in text and "`E`" in text, text
    (tmp_path / "quiz.parquet").write_bytes(b"PAR1 not really")
    c, text = compile_text(tmp_path, spec('parquet("quiz.parquet")', languages="en"))
    assert "not a readable Parquet file" in text


def test_a_bad_row_of_a_per_language_config_names_its_config(tmp_path):
    items = dict(ITEMS, fr=[ITEMS["fr"][0], ("q2", "Lequel est une couleur ?", ["bleu", "pain"], "Z", "art")])
    write_repo(tmp_path / "quiz_repo", items)
    c, text = compile_text(tmp_path, spec('hf("./quiz_repo", config = "{lang}", split = "test")'))
    assert not c.ok
    assert "quiz_repo: row 7: error[E015]" in text and "row 7 is row 2 of config `fr` (fr)" in text, text


def test_hub_arguments_are_checked(tmp_path):
    write_repo(tmp_path / "quiz_repo")
    c, text = compile_text(tmp_path, spec('hf("./quiz_repo", configs = "{lang}")'))
    assert "`hf` takes no argument `configs`" in text and "did you mean `config`?" in text
    c, text = compile_text(tmp_path, spec('hf("./quiz_repo", config = "en")'))
    assert "has the splits test" not in text  # one split: taken
    c, text = compile_text(tmp_path, spec('hf("./quiz_repo", config = "xx", split = "test")'))
    assert "config `xx`" in text and "BuilderConfig 'xx' not found" in text
    c, text = compile_text(tmp_path, spec('jsonl("quiz.jsonl", split = "test")'))
    assert "only hf(...) takes" in text


def test_offline_without_a_cached_copy_says_what_to_do(tmp_path):
    (tmp_path / "tables.xls").write_text(spec('hf("xlspec-tests/not-cached-anywhere", config = "{lang}", split = "test")'), encoding="utf-8")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "xlspec"), "compile", "tables.xls"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "tables.xls:5:19: error[E010]: dataset `quiz`" in out.stderr
    assert "HF_DATASETS_OFFLINE" in out.stderr and "network access" in out.stderr
    assert "Traceback" not in out.stderr
