"""Which items a cell asks about, and what a prompt is filled with.

Shared by the compiler (item counts and estimates) and the runtime (the requests), so both
select exactly the same items.  Works on the plan's dataset entry (a plain dict) and the
records of :mod:`xlspec.data`.

The rules the checker holds every record to live here too, so that what it accepts is what
the runtime reads: :func:`option_values` (a list of option columns may end in empty ones,
an item with fewer options), :func:`gold_problem` (gold is an option label, a 0-based
index or an option text, as the dataset's ``gold_is`` says), :func:`is_text` (what a
template field may hold).

Filters are JSON-able trees:
``["field", name]``, ``["const", value]``, ``[op, left, right]`` for ``== != < <= > >= in``
``not in and or``, and ``["not", x]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .axes import CELL_AXIS_NAMES
from .data import Record
from .normalize import normalize_label
from .prompt import format_options, option_labels

# Mapping names with a meaning of their own; every other mapped name is a template field.
SPECIAL_FIELDS = frozenset({"id", "gold", "targets", "human", "partition", "language"})

# ---- datasets of another study's responses (responses(STUDY), see xlspec.check.stages) ----

ROW_FIELDS: dict[str, str] = {
    "prompt": "the prompt the upstream model was sent",
    "response": "the text the upstream model generated",
    "parsed_answer": "what the upstream answer parser read from it",
}
"""Fields every item of a response dataset has, under these names."""

UPSTREAM_COLUMNS: dict[str, str] = {
    **{axis: f"the upstream cell's `{axis}`" for axis in CELL_AXIS_NAMES if axis != "language"},
    "item_id": "the upstream item's id",
    "sample": "the upstream sample number (samples = N)",
    "request_id": "the upstream request's id",
}
"""What a response dataset's block can map to a name of its own: ``generator = model``."""


def upstream_source(source) -> str | None:
    """The upstream column a response dataset's field reads where it is one of
    :data:`UPSTREAM_COLUMNS` (``model``; ``model@b``: the second response's of a pair),
    else None."""
    if not isinstance(source, str):
        return None
    base = source.split("@", 1)[0]
    return base if base in UPSTREAM_COLUMNS else None

UPSTREAM_REQUEST = "upstream_request_id"
"""The field of a response dataset's item that names the upstream request it came from (the
results row of a judgement carries it, so a query can join it to the generation)."""

RESPONSE_KEY = "key"
"""The record field of a response dataset that identifies an upstream row (its item id
downstream): the upstream item id, the upstream cell's axes but its language, and the sample."""


LIST_FIELDS = frozenset({"options", "targets", "human"})
"""The mapping names that may be a list of fields (``options = [option_a, option_b]``)."""

MAX_LETTER_OPTIONS = 26
"""``labels = letters`` names options A to Z."""


def max_options(labels: str) -> int | None:
    """How many options a label style can name (None: no limit)."""
    return MAX_LETTER_OPTIONS if labels == "letters" else None


def empty(value: Any) -> bool:
    """A per-language value that does not count: the item does not exist in that language."""
    return value is None or value == "" or value == []


def evaluate(expr: Any, fields: dict) -> Any:
    op = expr[0]
    if op == "field":
        return fields.get(expr[1])
    if op == "const":
        return expr[1]
    if op == "not":
        return not evaluate(expr[1], fields)
    if op == "and":
        return bool(evaluate(expr[1], fields)) and bool(evaluate(expr[2], fields))
    if op == "or":
        return bool(evaluate(expr[1], fields)) or bool(evaluate(expr[2], fields))
    left, right = evaluate(expr[1], fields), evaluate(expr[2], fields)
    if op in ("in", "not in"):
        inside = isinstance(right, (list, tuple, str)) and left in right
        return inside if op == "in" else not inside
    if op == "==":
        return _same(left, right)
    if op == "!=":
        return not _same(left, right)
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _resolve(fields: dict, mapping: dict, language: str, country: str | None) -> Any:
    source, index = mapping["source"], mapping.get("index")
    if isinstance(source, list):
        return [fields.get(s) for s in source]
    value = fields.get(source)
    if index == "lang":
        return value.get(language) if isinstance(value, dict) else None
    if index == "country":
        return value.get(country) if isinstance(value, dict) and country else None
    return value


def partition_of(record: Record, dataset: dict, language: str) -> str | None:
    """The partition value of an item in a language (``partition = split`` or
    ``partition = split[lang]``); None where the dataset maps no partition."""
    part = dataset["fields"].get("partition")
    return None if part is None else str(_resolve(record.fields, part, language, None))


def available(record: Record, dataset: dict, language: str) -> bool:
    """An item exists in a language when every per-language field has a value for it (wide
    layout), or its language column says that language (long layout)."""
    fields = dataset["fields"]
    lang_col = fields.get("language")
    if lang_col is not None:
        return record.fields.get(lang_col["source"]) == language
    for mapping in fields.values():
        if mapping.get("index") == "lang":
            value = record.fields.get(mapping["source"])
            if not isinstance(value, dict) or empty(value.get(language)):
                return False
    return True


def record_languages(record: Record, dataset: dict) -> set[str] | None:
    """The languages an item exists in (:func:`available` for every language at once); None
    where it exists in every language (a dataset with no language column and no ``[lang]``
    field)."""
    fields = dataset["fields"]
    lang_col = fields.get("language")
    if lang_col is not None:
        value = record.fields.get(lang_col["source"])
        return {value} if isinstance(value, str) else set()
    langs: set[str] | None = None
    for mapping in fields.values():
        if mapping.get("index") == "lang":
            value = record.fields.get(mapping["source"])
            have = {k for k, v in value.items() if not empty(v)} if isinstance(value, dict) else set()
            langs = have if langs is None else langs & have
    return langs


def select(records: list[Record], dataset: dict, language: str, partition: str | None, filters: list[Any], limit: int | None) -> list[Record]:
    part = dataset["fields"].get("partition")
    out = []
    for r in records:
        if not available(r, dataset, language):
            continue
        if partition is not None and part is not None and partition_of(r, dataset, language) != partition:
            continue
        if any(f is not None and not evaluate(f, r.fields) for f in filters):
            continue
        out.append(r)
        if limit is not None and len(out) >= limit:
            break
    return out


@dataclass
class ItemView:
    item_id: str
    values: dict[str, str]
    """What the template's placeholders are filled with (fields of the item)."""
    labels: list[str]
    option_texts: list[str]
    """The option texts, in label order (empty without options)."""
    gold: str | None
    targets: list[str]
    human: dict[str, float] | None
    line: int


def view(record: Record, dataset: dict, language: str, country: str | None) -> ItemView:
    fields = dataset["fields"]
    values: dict[str, str] = {}
    labels: list[str] = []
    opts: list[str] = []
    for name, mapping in fields.items():
        if name in SPECIAL_FIELDS:
            continue
        value = _resolve(record.fields, mapping, language, country)
        if name == "options":
            opts = [str(v) for v in option_values(value, mapping) if v is not None]
            labels = option_labels(len(opts), dataset.get("labels", "letters"))
            values["options"] = format_options(opts, labels)
            values["option_texts"] = "\n".join(opts)
            continue
        values[name] = "" if value is None else str(value)
    item_id = str(_resolve(record.fields, fields["id"], language, country)) if "id" in fields else str(record.line)
    gold = _resolve(record.fields, fields["gold"], language, country) if "gold" in fields else None
    gold = gold_label(gold, labels, opts, dataset.get("gold_is"))
    if "targets" in fields:
        raw = _resolve(record.fields, fields["targets"], language, country)
        targets = [str(t) for t in raw] if isinstance(raw, list) else ([str(raw)] if raw is not None else [])
    else:
        targets = [gold] if gold is not None else []
    human = None
    if "human" in fields:
        raw = _resolve(record.fields, fields["human"], language, country)
        if isinstance(raw, dict):
            human = {str(k): float(v) for k, v in raw.items()}
        elif isinstance(raw, list) and labels:
            human = {label: float(v) for label, v in zip(labels, raw)}
    return ItemView(item_id, values, labels, opts, gold, targets, human, record.line)


def option_values(value: Any, mapping: dict) -> list:
    """The options of an item, as the data holds them: a field holding a list, or a list of
    fields (columns), whose trailing empty columns are no option (an item with fewer
    options).  Not a list: no options (the checker reports it)."""
    if isinstance(mapping["source"], list):
        values = list(value) if isinstance(value, list) else []
        while values and (values[-1] is None or values[-1] == ""):
            values.pop()
        return values
    return value if isinstance(value, list) else []


GOLD_READINGS = ("label", "index", "text")
"""How a gold value names the right option: its ``label`` (A, B, ... or 1, 2, ...), its
0-based ``index`` (a whole number) or its ``text`` (equal to one option's text)."""


def gold_readings(gold: Any, labels: list[str], texts: list[str]) -> list[str]:
    """The readings under which ``gold`` names one of these options (see :data:`GOLD_READINGS`)."""
    out = []
    if is_text(gold) and str(gold).strip():
        if normalize_label(gold) in {normalize_label(label) for label in labels}:
            out.append("label")
        if _is_index(gold) and 0 <= gold < len(labels):
            out.append("index")
        if str(gold).strip() in {t.strip() for t in texts}:
            out.append("text")
    return out


def gold_label(gold: Any, labels: list[str], texts: list[str], reading: str | None) -> str | None:
    """The label of the option ``gold`` names under ``reading`` (the dataset's ``gold_is``);
    the value as text where it names none (a reference answer without options, or a value
    the checker reported)."""
    if gold is None:
        return None
    text = str(gold).strip()
    if reading == "index" and _is_index(gold) and 0 <= gold < len(labels):
        return labels[gold]
    if reading == "text":
        hit = next((i for i, t in enumerate(texts) if t.strip() == text), None)
        if hit is not None and hit < len(labels):
            return labels[hit]
    return text


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    """A value a prompt can show as text: a string or a number (not a boolean, a list, an
    object or null)."""
    return isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def gold_problem(gold: Any, labels: list[str], texts: list[str] = (), reading: str | None = "label") -> str | None:
    """Why ``gold`` is not a gold answer for an item with these options under ``reading``
    (None when it is one).  With options, gold is read as the dataset's ``gold_is`` says
    (:data:`GOLD_READINGS`; labels compare as ``accuracy`` compares them: case, width and
    digit script aside); without options it is the reference text."""
    if gold is None:
        return "is null"
    if not is_text(gold):
        return "is a boolean" if isinstance(gold, bool) else f"is a {'list' if isinstance(gold, list) else 'object'}, not one answer"
    if not str(gold).strip():
        return "is empty"
    if not labels:
        return None
    if reading in gold_readings(gold, labels, list(texts)):
        return None
    span = f"{labels[0]}-{labels[-1]}" if len(labels) > 1 else labels[0]
    if reading == "index":
        return f"is not a 0-based option index (0-{len(labels) - 1})"
    if reading == "text":
        return "is not the text of one of the item's options"
    return f"is not an option label ({span})"
