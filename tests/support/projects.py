"""Tiny projects (a spec and its data file) written in a temporary folder and compiled with
the one compiler API (:func:`xlspec.api.compile_file`), for tests of lowering, the store and
the scheduler.

The spec's model is ``fake("x")`` where the checker accepts engines registered in
``ENGINES``; where it does not (yet), the model is ``hf("x")`` and the runs use
``run_plan(..., engine_override="fake")``.  Either way the plan is the same apart from the
model's engine, and tests never depend on which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xlspec import plan as planmod
from xlspec.api import Compilation, compile_file
from xlspec.plan import Plan

from . import fake_engine  # noqa: F401  (registers the fake engine)

QUESTIONS = {
    "en": ["What is one plus one?", "What colour is snow?", "Which is a fruit?", "Which animal barks?", "Which is hot?"],
    "fr": ["Combien font un plus un ?", "De quelle couleur est la neige ?", "Lequel est un fruit ?", "Quel animal aboie ?", "Lequel est chaud ?"],
    "de": ["Was ist eins plus eins?", "Welche Farbe hat Schnee?", "Was ist eine Frucht?", "Welches Tier bellt?", "Was ist heiss?"],
}
OPTIONS = {
    "en": [["two", "three"], ["black", "white"], ["apple", "stone"], ["dog", "fish"], ["fire", "ice"]],
    "fr": [["deux", "trois"], ["noir", "blanc"], ["pomme", "pierre"], ["chien", "poisson"], ["feu", "glace"]],
    "de": [["zwei", "drei"], ["schwarz", "weiss"], ["Apfel", "Stein"], ["Hund", "Fisch"], ["Feuer", "Eis"]],
}
GOLD = ["A", "B", "A", "A", "A"]
ITEMS = len(GOLD)

FRAMINGS = {
    "plain": {"en": "{question}\\n{options}\\nAnswer:", "fr": "{question}\\n{options}\\nRéponse :", "de": "{question}\\n{options}\\nAntwort:"},
    "quiz": {"en": "Quiz! {question}\\n{options}", "fr": "Quiz ! {question}\\n{options}", "de": "Quiz! {question}\\n{options}"},
}


def records() -> list[dict]:
    return [
        {
            "id": f"q{i + 1}",
            "question": {lang: QUESTIONS[lang][i] for lang in QUESTIONS},
            "options": {lang: OPTIONS[lang][i] for lang in OPTIONS},
            "answer": GOLD[i],
        }
        for i in range(ITEMS)
    ]


def spec_text(
    *,
    engine: str = "fake",
    languages: str = "en, fr",
    framings: dict | None = None,
    model_settings: str = "",
    answer: str = "options + generate(parser = option_letter)",
    mode: str = "max_tokens = 4",
    study_extra: str = "",
    extra: str = "",
) -> str:
    framings = FRAMINGS if framings is None else framings
    blocks = []
    for name, templates in framings.items():
        lines = "\n".join(f'  {lang} = "{text}"' for lang, text in templates.items())
        blocks.append(f"framing {name} {{\n{lines}\n}}")
    settings = f" {{ {model_settings} }}" if model_settings else ""
    return f"""experiment tiny "A tiny experiment for tests"

languages langs = [{languages}]

dataset facts = jsonl("facts.jsonl") {{
  id = id
  question = question[lang]
  options = options[lang]
  gold = answer
  labels = letters
}}

{chr(10).join(blocks)}

mode direct {{ {mode} }}

model m = {engine}("x"){settings}
{extra}
study s {{
  model = m
  dataset = facts
  language = langs
  framing = [{", ".join(framings)}]
  mode = direct
  answer = {answer}
  metrics = [accuracy]
{study_extra}
}}
"""


@dataclass
class Project:
    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "tiny.xls"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def store(self) -> Path:
        return self.runs / ".store"

    def write_data(self, rows: list[dict] | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "facts.jsonl", "w", encoding="utf-8") as f:
            for row in records() if rows is None else rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def compile(self, name: str = "tiny", **spec) -> tuple[Plan, str]:
        """Write the spec (:func:`spec_text` arguments), compile it and write the plan as
        ``build/<name>.plan.json``; returns the typed plan and its path."""
        c = compile_spec(self.spec, dict(spec), self.build)
        path = str(self.build / f"{name}.plan.json")
        planmod.write(c.data, path)
        return planmod.load(path), path


def compile_spec(path: Path, spec: dict, out_dir: Path) -> Compilation:
    """Compile :func:`spec_text` (with ``spec``) written at ``path``: with ``fake("x")``, or
    with ``hf("x")`` where the checker does not accept the fake engine (or with the engine
    ``spec`` names, such as ``openai``)."""
    errors = []
    for engine in [spec.pop("engine")] if "engine" in spec else ("fake", "hf"):
        path.write_text(spec_text(engine=engine, **spec), encoding="utf-8")
        c = compile_file(str(path), str(out_dir))
        if c.ok:
            return c
        errors.append([d.message for d in c.diagnostics])
    raise AssertionError(f"the test spec does not compile: {errors}")


def new_project(root: Path) -> Project:
    p = Project(Path(root))
    p.write_data()
    return p
