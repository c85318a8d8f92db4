"""The words of the spec language that belong to no registry: declaration kinds and their
shapes, study settings, dataset mapping names, template variables.  Each entry has a
one-line summary, so the language reference in ``docs/`` can be generated from (or checked
against) these tables, and the checker reads them for what it accepts.

What extensions provide is not listed here but read from their registries: engines
(``xlspec.runtime.engines.ENGINES``), answer kinds (``xlspec.answers.ANSWER_KINDS``), answer
parsers (``xlspec.parsers.PARSERS``), metrics (``xlspec.runtime.metrics.registry.METRICS``),
axes (``xlspec.axes``), model and mode settings (``xlspec.spec.ModelSpec.settings()``,
``ModeSpec``) and report templates (``xlspec.templates.BUILTIN_TEMPLATES``).

Pure data: this module imports nothing of xlspec, loads no registry and reads no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Kind:
    """A declaration kind and its shape: ``KIND NAME ["title"] [= VALUE] [{ SETTINGS }]``."""

    summary: str
    title: bool = False
    """It may carry a title string."""
    value: bool = False
    """It needs ``= VALUE`` (and takes none otherwise)."""
    body: Literal["required", "optional", "no"] = "no"
    """Its ``{ ... }`` block."""


DECLARATIONS: dict[str, Kind] = {
    "experiment": Kind("the experiment: one per spec, in the top-level file; names build/NAME.plan.json", title=True),
    "languages": Kind("a named language set: codes in a list, other sets, set algebra (a + b, a - b, a & b)", value=True),
    "countries": Kind("countries and their native languages: { EG: ar, IR: fa }", value=True),
    "dataset": Kind('a data file and its field mapping, jsonl("path") or csv("path") { ... }, or another study\'s responses: responses(STUDY)', value=True, body="optional"),
    "framing": Kind('a prompt template per language: { en = "..." ar = "..." }', body="required"),
    "mode": Kind("how the model answers: instruction, token budget, sampling", body="required"),
    "model": Kind('a model and its engine: hf("source") or vllm("source"), with settings', value=True, body="optional"),
    "subset": Kind('a named item filter, usable as an axis: field == "x" and not (y in [1, 2])', value=True),
    "group": Kind("a named list of models, framings, datasets, ... usable wherever a list of them is", value=True),
    "metric": Kind("a derived metric, named: an expression over per-item metrics across cells (mean(accuracy, over = language, where = language != en), at(accuracy, language = en) - ..., spearman(...), fit(...))", title=True, value=True),
    "study": Kind("the cross product to run, its answer kinds and metrics", body="required"),
    "report": Kind('a Jinja report template: a built-in one or a path ("report.html.j2")', value=True),
}
"""Declaration kinds in the order the language reference lists them.  (``import "file.xls"``
is not a declaration: the grammar reads it.)"""

KINDS: dict[str, str] = {name: kind.summary for name, kind in DECLARATIONS.items()}
"""Declaration kind -> its summary."""

STUDY_SETTINGS: dict[str, str] = {
    "model": "the model(s) that answer: a name, a group or a list (an axis)",
    "dataset": "the dataset(s) the items come from (an axis)",
    "language": "the prompt languages: a language expression, which may use native(country) (an axis)",
    "country": "a `countries` map, or a list of its country codes (an axis)",
    "framing": "the prompt template(s) (an axis)",
    "mode": "how the model answers: instruction, token budget, sampling (an axis)",
    "partition": "values of the datasets' `partition` field, each selecting its items (an axis)",
    "subset": "named item filters, each selecting its items (an axis)",
    "where": "an item filter applied to every cell",
    "shots": "numbers of few-shot examples (an axis when more than one)",
    "fewshot": "the dataset the few-shot examples come from",
    "seeds": "sampling seeds (an axis when more than one)",
    "samples": "answers sampled per item and sampled answer kind",
    "answer": "the answer kinds, joined with +: generate(parser = ...), options, loglik(normalize = chars)",
    "metrics": "the metrics to compute, names or calls: accuracy, consistency(over = language)",
    "group_by": "the axes metrics are reported by (default: every axis of the study)",
    "limit": "at most this many items per cell (the first ones)",
    "coverage": "`full` (the default): a language, country, partition value or subset without items in a dataset is an error; `partial`: a warning, and its cells stay empty",
}
"""Study setting -> its summary."""

DATASET_FIELDS: dict[str, str] = {
    "id": "the item's id, which pairs an item across languages (required)",
    "gold": "the correct answer: an option label, a 0-based option index or an option text (see `gold_is`); without options, the reference text",
    "targets": "acceptable answers (a list), for metrics that compare text",
    "human": "a human distribution over the option labels (an object or a list)",
    "partition": "the value the study's `partition` axis selects items by",
    "language": "long layout: the row's language (one row per item and language)",
}
"""Mapping names with a meaning of their own (``xlspec.items.SPECIAL_FIELDS``) -> summary.
Every other mapped name is a template field; ``options`` is one that answer kinds read."""

OPTIONS_FIELD = "options"
"""The mapping of the option texts: a list of fields, or a field holding a list.  Answer
kinds that score options need it; templates show it as ``{options}``."""

DATASET_SETTINGS: dict[str, str] = {
    "scale": "an ordinal scale for the option numbers: ordinal(MIN, MAX)",
    "labels": "how options are labelled: `letters` (A, B, ...; the default) or `numbers` (1, 2, ...; the default with a scale)",
    "gold_is": "how `gold` names the right option: `label` (A or 1), `index` (0-based) or `text` (the option's text); read off the data where only one fits every record",
}
"""Dataset settings that map no field."""

DATA_FORMATS: dict[str, str] = {
    "jsonl": "one JSON object per line",
    "csv": "a header row, then one record per row",
    "parquet": "a Parquet file, one record per row",
    "hf": "a Hugging Face hub dataset (or a local folder laid out as one), read with the `datasets` library: hf(\"org/name\", config = ..., split = ..., revision = ...)",
}

LABELS: dict[str, str] = {"numbers": "1, 2, ...", "letters": "A, B, ..."}

FIELD_INDEXES: dict[str, str] = {
    "lang": "the field holds an object keyed by language code: field[lang]",
    "country": "the field holds an object keyed by country code: field[country]",
}

TEMPLATE_VARIABLES: dict[str, str] = {
    "lang": "the prompt's language code",
    "language": "the language's name, written in the prompt's language",
    "country": "the country's name, written in the prompt's language (studies with a country axis)",
}
"""Placeholders a cell provides whatever the dataset."""

OPTION_PLACEHOLDERS: dict[str, str] = {
    "options": "the options, one per line, as `<label>. <text>`",
    "option_texts": "the option texts, one per line, without labels",
}
"""Placeholders a dataset that maps ``options`` provides besides its mapped fields."""

NATIVE = "native"
"""``native(country)`` in a study's language expression: the country's native language."""
