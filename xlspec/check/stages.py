"""Stages: a dataset made of another study's responses, ``dataset NAME = responses(STUDY)``.

A judge reads what a generator wrote.  Each result row of the upstream study's ``generate``
answers becomes one item of the dataset (long layout: the row's language is the item's
language), with these fields:

- ``prompt``, ``response``, ``parsed_answer``: what the upstream model was sent, wrote and
  what its parser read;
- the fields the upstream item had (``question``, ...), under the names its dataset mapped;
- the upstream axes and row values (``model``, ``framing``, ``mode``, ``item_id``,
  ``sample``, ...) only where the block maps them to a name of their own: ``generator =
  model``.  The downstream study has axes of its own (its ``model`` is the judge), so an
  upstream axis always gets a new name.

``read_response_datasets(decls, groups, datasets, diags)`` runs after the data files are read
(a response dataset's fields include its upstream items' fields), in dependency order, so
chains of stages work.  A study that reads its own responses, directly or through other
stages, is E020; ``responses(x)`` naming no study is E003.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .. import ast
from ..diagnostics import Diagnostics, Span
from ..axes import CELL_AXIS_NAMES
from ..items import LIST_FIELDS, RESPONSE_KEY, ROW_FIELDS, SPECIAL_FIELDS, UPSTREAM_COLUMNS, UPSTREAM_REQUEST

RESERVED = {"language", "option_texts", RESPONSE_KEY, UPSTREAM_REQUEST}
"""Record fields of a response dataset's items that an upstream item field may not shadow."""
from ..spec import DatasetSpec, FieldMap
from .context import did_you_mean, items_of, name_of, span_of, where
from .declarations import Declarations

RESPONSES = "responses"
"""The call that makes a dataset of a study's responses."""

def responses_call(d: ast.Decl) -> ast.Call | None:
    v = d.value
    return v if isinstance(v, ast.Call) and v.func.text == RESPONSES else None


def read_response_datasets(decls: Declarations, groups: dict[str, list[ast.Ref]], datasets: dict[str, DatasetSpec], diags: Diagnostics) -> None:
    """Add each ``responses(STUDY)`` dataset to ``datasets`` (which holds the file datasets)."""
    pending = {name: d for name, d in decls["dataset"].items() if responses_call(d) is not None}
    upstream: dict[str, tuple[str, Span | None]] = {}
    for name, d in pending.items():
        call = responses_call(d)
        positional = [a for a in call.args if not isinstance(a, ast.KwArg)]
        study = name_of(positional[0]) if len(positional) == 1 and isinstance(call.args[0], ast.Ref) else None
        if study is None:
            diags.error("E014", "a response dataset names one study: responses(generate)", span_of(call))
            continue
        if _pair_axis(call, diags) is False:
            continue
        if study not in decls["study"]:
            diags.error("E003", f"undefined study `{study}`", call.args[0].span, hint=did_you_mean(study, decls["study"], "declare it: study NAME { ... }"))
            continue
        upstream[name] = (study, call.args[0].span)
    reads = {name: study_datasets(decls, groups, study) for name, (study, _) in upstream.items()}
    cyclic = _cycles(upstream, reads, decls, diags)
    done: set[str] = set()
    progress = True
    while progress:
        progress = False
        for name, (study, _) in upstream.items():
            if name in done or name in cyclic or not all(n in datasets or n not in pending for n in reads[name]):
                continue
            done.add(name)
            progress = True
            missing = [n for n in reads[name] if n not in datasets]
            if missing:
                continue  # the upstream study's data is broken (reported there)
            spec = _response_dataset(pending[name], study, [datasets[n] for n in reads[name]], diags, _pair_axis(responses_call(pending[name]), Diagnostics()) or None)
            if spec is not None:
                datasets[name] = spec


PAIRABLE = [a for a in CELL_AXIS_NAMES if a != "language"]
"""The upstream axes whose values ``responses(STUDY, pair = AXIS)`` can pair."""


def _pair_axis(call: ast.Call, diags: Diagnostics) -> str | None | bool:
    """The ``pair = AXIS`` of ``responses(STUDY, pair = AXIS)``: the axis, None without one,
    False after an error (reported)."""
    out: str | None | bool = None
    for a in call.args:
        if not isinstance(a, ast.KwArg):
            continue
        if a.name.text != "pair":
            diags.error("E014", f"`responses` takes no argument `{a.name.text}`", a.name.span, hint="responses(STUDY), or responses(STUDY, pair = model) to judge two models' responses side by side")
            return False
        axis = name_of(a.value)
        if out is not None:
            diags.error("E014", "`pair` is given twice", a.name.span, hint="a response dataset pairs its responses by one axis")
            return False
        if axis not in PAIRABLE:
            diags.error("E014", f"`pair` names an upstream axis whose values are paired; `{axis or '?'}` is not one", span_of(a.value), hint=did_you_mean(axis or "", PAIRABLE, f"axes: {', '.join(PAIRABLE)}"))
            return False
        out = axis
    return out


def pair_fields(pair: str, name: str) -> dict[str, str]:
    """The fields of a paired item that differ between its two responses -> their source
    (``COLUMN@a``: that column of the first response's row): ``response_a``,
    ``response_b``, ``parsed_answer_a``, ``parsed_answer_b``, ``request_id_b``, and the paired
    axis under ``NAME_a`` and ``NAME_b``."""
    out = {f"{f}_{side}": f"{f}@{side}" for f in ("response", "parsed_answer") for side in "ab"}
    out["request_id_b"] = "request_id@b"
    out |= {f"{name}_{side}": f"{pair}@{side}" for side in "ab"}
    return out


def study_datasets(decls: Declarations, groups: dict[str, list[ast.Ref]], study: str) -> list[str]:
    """The dataset names a study's ``dataset`` setting writes (groups expanded), read from
    the declaration: the study itself is resolved later."""
    d = decls["study"][study]
    setting = d.body.get("dataset") if d.body is not None else None
    out: list[str] = []
    stack = list(reversed(items_of(setting.value))) if setting is not None else []
    while stack:
        name = name_of(stack.pop())
        if name is None:
            continue
        if name in groups:
            stack.extend(reversed(groups[name]))
        elif name in decls["dataset"] and name not in out:
            out.append(name)
    return out


def _cycles(upstream: dict[str, tuple[str, Span | None]], reads: dict[str, list[str]], decls: Declarations, diags: Diagnostics) -> set[str]:
    """Response datasets on a cycle (a dataset -> its study -> that study's datasets -> ...
    -> the dataset): E020 once per cycle, at the first dataset's ``responses(...)``."""
    edges = {a: [b for b in reads[a] if b in upstream] for a in upstream}
    on_cycle: set[str] = set()
    reported: set[frozenset[str]] = set()
    for start in sorted(upstream):
        # Breadth first: the shortest way back to the start, if there is one.
        came_from: dict[str, str] = {}
        queue, last = deque([start]), None
        while queue and last is None:
            node = queue.popleft()
            for nxt in edges[node]:
                if nxt == start:
                    last = node
                    break
                if nxt not in came_from:
                    came_from[nxt] = node
                    queue.append(nxt)
        if last is None:
            continue
        path = [last]
        while path[-1] != start:
            path.append(came_from[path[-1]])
        path.reverse()
        members = frozenset(path)
        on_cycle |= members
        if members in reported:
            continue
        reported.add(members)
        chain = " -> ".join(f"dataset `{n}` (responses of study `{upstream[n][0]}`)" for n in path)
        diags.error(
            "E020", f"study `{upstream[start][0]}` reads its own responses: {chain} -> dataset `{start}`",
            upstream[start][1], hint="a study can read the responses of studies that do not read its own",
            notes=[f"dataset `{n}` declared at {where(decls['dataset'][n].name.span)}" for n in path],
        )
    return on_cycle


def _results_columns() -> list[str]:
    from ..runtime.schema import RESULTS_SCHEMA  # pyarrow: only where a response dataset is

    return RESULTS_SCHEMA.names


def _response_dataset(d: ast.Decl, study: str, sources: list[DatasetSpec], diags: Diagnostics, pair: str | None = None) -> DatasetSpec | None:
    # Fields of the upstream items: those every one of the study's datasets maps.
    item_fields: set[str] | None = None
    for ds in sources:
        names = {k for k in ds.fields if k not in SPECIAL_FIELDS}
        item_fields = names if item_fields is None else item_fields & names
    # Item fields under names the row's own columns or the upstream axes also have are left
    # out (the row's value wins there), as are list fields (`options`: the upstream prompt
    # showed them as text, which {prompt} holds).
    item_fields = {f for f in (item_fields or set()) if f not in ROW_FIELDS and f not in UPSTREAM_COLUMNS and f not in LIST_FIELDS and f not in RESERVED}
    columns = set(ROW_FIELDS) | item_fields
    fields: dict[str, FieldMap] = {
        "id": FieldMap(source=RESPONSE_KEY), "language": FieldMap(source="language"), UPSTREAM_REQUEST: FieldMap(source="request_id"),
    }
    fields |= {name: FieldMap(source=name) for name in sorted(columns)}
    ok = True
    for s in d.body.settings if d.body else ():
        key, v = s.key.text, s.value
        src = name_of(v)
        if key in ("id", "language", UPSTREAM_REQUEST):
            diags.error("E014", f"a response dataset's `{key}` is its upstream row's; it cannot be mapped", s.key.span)
            ok = False
        elif src is None:
            diags.error("E014", "a response dataset maps a name to an upstream column: `generator = model`", span_of(v))
            ok = False
        elif src in UPSTREAM_COLUMNS and key in _results_columns() and key not in UPSTREAM_COLUMNS:
            # `engine = model`: the judge's rows have an `engine` column of their own, and a
            # metric grouping by the name would read that one.
            diags.error("E014", f"`{key}` is a column of the results; the upstream `{src}` needs a name of its own", s.key.span, hint=f"for example `{src}_upstream = {src}`, or `generator = model`")
            ok = False
        elif src in UPSTREAM_COLUMNS or src in columns:
            fields[key] = FieldMap(source=src)
        else:
            choices = sorted(set(UPSTREAM_COLUMNS) | columns)
            diags.error(
                "E011", f"the responses of study `{study}` have no column `{src}`", span_of(v),
                hint=did_you_mean(src, choices, f"columns: {', '.join(choices)}"),
            )
            ok = False
    if not ok:
        return None
    if pair is not None:
        # Two responses per item: the fields that differ get an _a and a _b, the paired axis
        # under the name the block gives it (`generator = model`: generator_a, generator_b).
        name = next((k for k, fm in fields.items() if fm.source == pair), pair)
        fields = {k: fm for k, fm in fields.items() if k not in ("response", "parsed_answer") and fm.source != pair}
        fields |= {k: FieldMap(source=src) for k, src in pair_fields(pair, name).items()}
    return DatasetSpec(name=d.name.text, format=RESPONSES, path="", abs_path="", sha256="", study=study, fields=fields, pair=pair)


@dataclass(frozen=True)
class UpstreamFacts:
    """What the study pass learnt of a study that another one reads, even where the study
    itself has errors: its languages and answer kinds."""

    languages: list[str]
    answer_kinds: list[str]
    axis_values: dict[str, int] | None = None
    """How many values each axis takes (None where the study failed before they were read)."""


def check_upstream(d: ast.Decl, settings: dict[str, ast.Setting], datasets: list[str], languages: list[str], scope, upstream: dict[str, UpstreamFacts], diags: Diagnostics) -> None:
    """A study's response datasets against the studies they read: the upstream study
    generates text, and it asks every language this study asks (E017, a warning under
    ``coverage = partial``, as a data file lacking a language is)."""
    from .coverage import coverage_mode

    partial = coverage_mode(settings.get("coverage"), Diagnostics()) == "partial"
    for name in datasets:
        ds = scope.datasets.get(name)
        up = upstream.get(ds.study) if ds is not None and ds.study else None
        if up is None:
            continue
        decl = scope.decls["dataset"][name]
        call = responses_call(decl)
        if "generate" not in up.answer_kinds:
            kinds = ", ".join(dict.fromkeys(up.answer_kinds)) or "none"
            diags.error(
                "E014", f"study `{ds.study}` generates no text for dataset `{name}` to read: its answers are {kinds}",
                span_of(call.args[0]) if call is not None else decl.name.span, hint=f"add `generate` to the answers of study `{ds.study}`",
            )
            continue
        if ds.pair is not None and up.axis_values is not None and up.axis_values.get(ds.pair, 0) < 2:
            arg = next((a for a in call.args if isinstance(a, ast.KwArg) and a.name.text == "pair"), None) if call is not None else None
            n = up.axis_values.get(ds.pair, 0)
            diags.error(
                "E014", f"study `{ds.study}` has {'one' if n == 1 else 'no'} `{ds.pair}`: dataset `{name}` pairs its responses by `{ds.pair}`, and there is nothing to pair",
                span_of(arg.value) if arg is not None else decl.name.span, hint=f"give study `{ds.study}` two or more values of `{ds.pair}`, or pair another axis",
            )
            continue
        asked = set(up.languages)
        lacking = [lang for lang in languages if lang not in asked]
        if not lacking:
            continue
        message = f"dataset `{name}` (the responses of study `{ds.study}`) has no items in {', '.join(f'`{x}`' for x in lacking)}, {'a language' if len(lacking) == 1 else 'languages'} of study `{d.name.text}`"
        notes = [f"study `{ds.study}` asks {', '.join(sorted(asked))}"]
        span = span_of(settings["language"].value) if "language" in settings else d.name.span
        if partial:
            diags.warning("E017", message, span, hint=None)
        else:
            diags.error("E017", message, span, context=decl.name.span, hint=f"ask those languages in study `{ds.study}`, take them out of this study, or write `coverage = partial`", notes=notes)


def response_fields(ds: DatasetSpec) -> set[str]:
    """The record fields an item of a response dataset has (what a filter may read): the
    columns its block maps, under their names and their sources, and the upstream axes."""
    out = {name for name in ds.fields} | {fm.source for fm in ds.fields.values() if isinstance(fm.source, str)} | set(UPSTREAM_COLUMNS)
    return out - {"id", RESPONSE_KEY}
