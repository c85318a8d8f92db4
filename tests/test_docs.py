"""The documentation in ``docs/`` against the code, so it cannot drift:

- ``docs/reference.md`` and ``docs/metrics.md`` are what ``python -m xlspec.reference``
  generates (``UPDATE_GOLDEN=1`` rewrites them);
- every registered metric, parser, answer kind and engine, every setting, declaration kind
  and diagnostic code is in the reference, and the hand-written guides mention the metrics
  (``metrics.md``), the parsers and the settings (``language.md``);
- every results column is documented in ``results.md``;
- every relative link (and its anchor) in ``docs/*.md`` and ``README.md`` resolves;
- every example spec in ``language.md`` and ``diagnostics.md`` compiles (or fails) as shown,
  and the code excerpts of ``extending.md`` are in the files they name.

What is registered is read in a fresh interpreter: other tests register engines of their own
(``tests/support/fake_engine.py``), which are not part of the documented set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, check_golden

DOCS = os.path.join(ROOT, "docs")
README = os.path.join(ROOT, "README.md")
GUIDES = ("language.md", "reference.md", "metrics.md", "plans.md", "results.md", "diagnostics.md", "extending.md", "studies.md")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def generate(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "xlspec.reference", *args], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    return r.stdout.decode("utf-8")


NAMES_SCRIPT = """
import json
from xlspec.answers import ANSWER_KINDS
from xlspec.check.vocabulary import DATASET_FIELDS, DATASET_SETTINGS, DECLARATIONS, OPTION_PLACEHOLDERS, STUDY_SETTINGS, TEMPLATE_VARIABLES
from xlspec.diagnostics import CODES
from xlspec.parsers import PARSERS
from xlspec.runtime.engines import ENGINES
from xlspec.runtime.metrics.registry import listed_metrics
from xlspec.spec import FramingSpec, ModelSpec, ModeSpec
print(json.dumps({
    "metrics": listed_metrics(),
    "parsers": PARSERS.names(),
    "answer_kinds": ANSWER_KINDS.names(),
    "engines": ENGINES.names(),
    "declarations": list(DECLARATIONS),
    "study_settings": list(STUDY_SETTINGS),
    "model_settings": list(ModelSpec.settings()),
    "mode_settings": list(ModeSpec.model_fields),
    "framing_settings": [k for k in FramingSpec.model_fields if k != "templates"],
    "dataset_names": list(DATASET_FIELDS) + list(DATASET_SETTINGS),
    "placeholders": ["{" + k + "}" for k in list(TEMPLATE_VARIABLES) + list(OPTION_PLACEHOLDERS)],
    "codes": sorted(CODES),
}))
"""


@pytest.fixture(scope="module")
def names() -> dict[str, list[str]]:
    r = subprocess.run([sys.executable, "-c", NAMES_SCRIPT], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def mentioned(text: str, name: str) -> bool:
    """``name`` appears in code in ``text``: `name`, `name(...)`, `name = ...`."""
    return re.search(r"`" + re.escape(name) + r"(`|\(| =)", text) is not None


# ---- (a) generated files ---------------------------------------------------------------------


def test_reference_is_generated_from_the_code():
    check_golden(os.path.join(DOCS, "reference.md"), generate())


def test_metrics_doc_is_generated_from_the_metric_modules():
    check_golden(os.path.join(DOCS, "metrics.md"), generate("metrics"))


def test_generator_imports_no_heavy_library():
    code = (
        "import sys; import xlspec.reference as r; r.render_reference(); r.render_metrics(); "
        "print('HEAVY', sorted(m for m in ('numpy', 'pandas', 'torch', 'pyarrow', 'ray', 'vllm', 'transformers') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_generator_names_an_entry_without_summary():
    from xlspec import reference
    from xlspec.parsers import PARSERS, Parser

    PARSERS.names()
    bad = Parser("undocumented_parser", " ", lambda: (lambda text, labels: text), can_refuse=False)
    PARSERS.register(bad.name, bad)
    try:
        with pytest.raises(reference.MissingSummary, match="undocumented_parser"):
            reference.render_reference()
    finally:
        del PARSERS._entries[bad.name]


def test_generator_needs_a_formula_for_every_metric():
    from xlspec import reference
    from xlspec.runtime.metrics.registry import METRICS, MetricInfo

    METRICS.names()
    stray = MetricInfo(name="stray_metric", summary="registered from outside runtime/metrics/defs")
    METRICS.register(stray.name, stray)
    try:
        with pytest.raises(reference.MissingSummary, match="stray_metric"):
            reference.render_metrics()
    finally:
        del METRICS._entries[stray.name]


# ---- (b) every registered or listed name is documented ---------------------------------------


@pytest.mark.parametrize(
    "group", ["metrics", "parsers", "answer_kinds", "engines", "declarations", "study_settings", "model_settings", "mode_settings", "framing_settings", "dataset_names", "placeholders", "codes"]
)
def test_reference_lists_every_name(names, group):
    text = read(os.path.join(DOCS, "reference.md"))
    missing = [n for n in names[group] if not mentioned(text, n)]
    assert not missing, f"docs/reference.md does not list these {group}: {missing} (UPDATE_GOLDEN=1 regenerates it)"


def test_metrics_doc_covers_every_metric(names):
    text = read(os.path.join(DOCS, "metrics.md"))
    missing = [m for m in names["metrics"] if f'<a id="{m}"></a>' not in text]
    assert not missing, f"docs/metrics.md has no section for {missing}"


@pytest.mark.parametrize(
    "group", ["parsers", "answer_kinds", "declarations", "study_settings", "model_settings", "mode_settings", "framing_settings", "dataset_names", "placeholders"]
)
def test_language_guide_mentions_every_name(names, group):
    text = read(os.path.join(DOCS, "language.md"))
    missing = [n for n in names[group] if not mentioned(text, n)]
    assert not missing, f"docs/language.md does not mention these {group}: {missing}; document them there"


def test_diagnostics_doc_has_a_section_per_code(names):
    text = read(os.path.join(DOCS, "diagnostics.md"))
    missing = [c for c in names["codes"] if not re.search(rf"^## {c}: ", text, re.M)]
    assert not missing, f"docs/diagnostics.md has no section for {missing}"


# ---- (c) results columns ---------------------------------------------------------------------


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"no section '## {heading}'"
    return m.group(1)


def test_every_results_column_is_documented():
    from xlspec.runtime.schema import RESULTS_SCHEMA

    section = _section(read(os.path.join(DOCS, "results.md")), "results.parquet")
    missing = [c for c in RESULTS_SCHEMA.names if f"| `{c}` |" not in section]
    assert not missing, f"docs/results.md does not document results columns {missing}"


def test_every_metrics_parquet_column_is_documented():
    from xlspec.runtime.report import METRICS_SCHEMA

    section = _section(read(os.path.join(DOCS, "results.md")), "metrics.parquet")
    missing = [c for c in METRICS_SCHEMA.names if f"`{c}`" not in section]
    assert not missing, f"docs/results.md does not document metrics.parquet columns {missing}"


# ---- (d) links -------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[str]:
    return sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md")) + [README]


def _anchors(path: str) -> set[str]:
    """GitHub's heading anchors of a Markdown file, and its explicit ``<a id>`` ones."""
    text = read(path)
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    out: set[str] = set(re.findall(r'<a id="([^"]+)"></a>', text))
    seen: dict[str, int] = {}
    for title in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(path):
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.M | re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            broken.append(f"{target} (no such file)")
        elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
            broken.append(f"{target} (no such anchor)")
    assert not broken, f"{os.path.relpath(path, ROOT)}: broken links: {broken}"


# ---- (e) example specs -----------------------------------------------------------------------

FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.M | re.S)


def _blocks(file: str) -> list[tuple[str, str]]:
    return FENCE.findall(read(os.path.join(DOCS, file)))


def _is_whole_spec(body: str) -> bool:
    first = next((line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    return first.startswith("experiment")


@pytest.fixture
def project(tmp_path, in_dir):
    """A folder holding a copy of ``specs/data`` and ``specs/common.xls``, the working
    directory while the test runs."""
    shutil.copytree(os.path.join(ROOT, "specs", "data"), tmp_path / "data")
    shutil.copy(os.path.join(ROOT, "specs", "common.xls"), tmp_path / "common.xls")
    with in_dir(tmp_path):
        yield tmp_path


LANGUAGE_SPECS = [b for lang, b in _blocks("language.md") if lang == "xls" and _is_whole_spec(b)]
LANGUAGE_SNIPPETS = [b for lang, b in _blocks("language.md") if lang == "xls" and not _is_whole_spec(b)]


def _first_line(body: str) -> str:
    return next(line for line in body.splitlines() if line.startswith("experiment"))


def test_language_guide_has_whole_examples():
    assert len(LANGUAGE_SPECS) >= 6
    assert any("native(country)" in b for b in LANGUAGE_SPECS)
    assert any("language = lang" in b for b in LANGUAGE_SPECS)  # long layout
    assert any("system =" in b for b in LANGUAGE_SPECS)
    assert any("regex(" in b for b in LANGUAGE_SPECS)
    assert any("by = [" in b for b in LANGUAGE_SPECS)
    assert any("group_by" in b for b in LANGUAGE_SPECS)


@pytest.mark.parametrize("body", LANGUAGE_SPECS, ids=_first_line)
def test_language_example_compiles(project, body):
    from xlspec.api import compile_file
    from xlspec.diagnostics import render_text

    (project / "example.xls").write_text(body, encoding="utf-8")
    result = compile_file("example.xls")
    assert result.ok, render_text(result.diagnostics.sorted(), result.sources)
    assert result.data["cells"]


@pytest.mark.parametrize("body", LANGUAGE_SNIPPETS, ids=lambda b: b.strip().splitlines()[0][:40])
def test_language_snippet_parses(body):
    from xlspec.diagnostics import Diagnostics
    from xlspec.syntax import parse

    diags = Diagnostics()
    parse(body, "snippet.xls", diags)
    assert not diags.has_errors(), [d.message for d in diags]


def test_parser_examples_read_what_the_guide_says(project):
    from xlspec.api import compile_file
    from xlspec.parsers import build

    (body,) = [b for b in LANGUAGE_SPECS if b.startswith("experiment parsed")]
    (project / "parsed.xls").write_text(body, encoding="utf-8")
    result = compile_file("parsed.xls")
    assert result.ok
    labels = ["A", "B", "C", "D"]
    reads = {
        "boxed": ("The answer is \\boxed{B}.", "B"),
        "tagged": ("A is wrong.\nAnswer: C", "C"),
        "structured": ('{"answer": "D", "confidence": 80}', "D"),
    }
    for study, (text, expected) in reads.items():
        (answer,) = result.data["studies"][study]["answers"]
        parse = build(answer["parser"], answer.get("parser_args"))
        assert parse(text, labels) == expected, study
        assert parse("I cannot tell.", labels) is None, study


DIAGNOSTIC_CASES = re.findall(r"^## ([EW]\d+): .*?\n```xls\n(.*?)^```\n\n```text\n(.*?)^```", read(os.path.join(DOCS, "diagnostics.md")), re.M | re.S)
HEADLINE = re.compile(r"^\S+:\d+:\d+: (?:error|warning)\[[EW]\d+\]: .*$", re.M)


def test_every_code_has_an_example(names):
    assert [c for c, _, _ in DIAGNOSTIC_CASES] == names["codes"]


@pytest.mark.parametrize("code, spec, expected", DIAGNOSTIC_CASES, ids=[c for c, _, _ in DIAGNOSTIC_CASES])
def test_diagnostic_example_prints_what_the_doc_shows(project, code, spec, expected):
    from xlspec.api import compile_file
    from xlspec.diagnostics import render_text

    (project / "spec.xls").write_text(spec, encoding="utf-8")
    result = compile_file("spec.xls")
    got = render_text(result.diagnostics.sorted(), result.sources)
    assert {d.code for d in result.diagnostics} == {code}, got
    assert HEADLINE.findall(got) == HEADLINE.findall(expected), got


EXCERPTS = re.findall(r"^<!-- excerpt: (\S+) -->\n```\w*\n(.*?)^```", read(os.path.join(DOCS, "extending.md")), re.M | re.S)


def test_extending_has_the_worked_examples():
    assert {path for path, _ in EXCERPTS} >= {"runtime/metrics/defs/mean.py", "xlspec/parsers/regex.py"}


@pytest.mark.parametrize("path, excerpt", EXCERPTS, ids=[p for p, _ in EXCERPTS])
def test_extending_excerpts_are_in_the_code(path, excerpt):
    """Every line of an excerpt (but `...`) is a line of the file, in the same order."""
    lines = [line.rstrip() for line in read(os.path.join(ROOT, path)).splitlines()]
    at = 0
    for line in excerpt.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        try:
            at = lines.index(line.rstrip(), at) + 1
        except ValueError:
            pytest.fail(f"docs/extending.md quotes a line that is not (or not in this order) in {path}: {line!r}")


# ---- README ----------------------------------------------------------------------------------


def test_readme_links_the_documentation():
    text = read(README)
    section = _section(text, "Documentation")
    for guide in ("docs/README.md", *(f"docs/{g}" for g in GUIDES)):
        assert f"]({guide})" in section, guide


def test_readme_quick_start_is_unchanged():
    text = read(README)
    assert "make demo    # set up, compile specs/demo.xls, run it on the embedded model, write runs/demo/\n" in text
    assert "make test    # set up (with the test tools) and run the whole test suite\n" in text


def _modules(folder: str) -> set[str]:
    """The modules and packages directly in ``folder``, as the layout names them."""
    out = set()
    for name in os.listdir(os.path.join(ROOT, folder)):
        full = os.path.join(ROOT, folder, name)
        if name.endswith(".py") and name != "__init__.py":
            out.add(name)
        elif os.path.isdir(full) and os.path.exists(os.path.join(full, "__init__.py")):
            out.add(name + "/")
    return out


def test_readme_layout_is_a_map_of_the_tree():
    layout = _section(read(README), "Layout")
    for folder in ("xlspec", "runtime"):
        missing = sorted(m for m in _modules(folder) if m not in layout)
        assert not missing, f"README.md's Layout does not name {folder}/{missing}"
    for name in set(re.findall(r"\b([a-z_]+\.py)\b", layout)):
        hits = [p for p, _, files in os.walk(os.path.join(ROOT, "xlspec")) for f in files if f == name]
        hits += [p for p, _, files in os.walk(os.path.join(ROOT, "runtime")) for f in files if f == name]
        hits += [p for p, _, files in os.walk(os.path.join(ROOT, "bench")) for f in files if f == name]
        assert hits, f"README.md's Layout names {name}, which does not exist"
