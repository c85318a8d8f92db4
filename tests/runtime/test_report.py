"""Reports: metrics.parquet, the Markdown report (golden), HTML escaping, and the HTML report
in a real headless Chromium (offline, no network, no script runs, charts present)."""

import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xlspec.plan import Plan
from xlspec.runtime.report import METRICS_SCHEMA, build_reports, render_context
from xlspec.runtime.schema import RESULTS_SCHEMA


def _root_conftest():
    """tests/conftest.py (its golden-file helper).  Loaded by path: ``from conftest import``
    would find tests/runtime/conftest.py first."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conftest.py")
    spec = importlib.util.spec_from_file_location("xlspec_tests_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_conftest = _root_conftest()
check_golden = _conftest.check_golden
GOLDEN = os.path.join(_conftest.FIXTURES, "report", "expected.md")

# Payloads a model could write.  The first two are the classic probes; the others would
# leave a trace (document.title, a global) if they ever ran.
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_TITLE = "<script>document.title='pwned';window.__pwned=1</script>"
XSS_IMG_TITLE = "<img src=x onerror=\"document.title='pwned';window.__pwned=2\">"
XSS_SVG = "<svg onload=\"window.__pwned=3\"></svg><a href=\"https://example.com/x\">link</a>"

LANGS = ["en", "de", "fr"]
FRAMINGS = ["plain", "quiz"]
ITEMS = ["q1", "q2", "q3", "q4"]
GOLD = {"q1": "A", "q2": "B", "q3": "C", "q4": "D"}
# (model, language, framing) -> generated answers per item ("-": refused) and the argmax of
# the option probabilities ("." : same as generated)
ANSWERS = {
    ("tiny", "en", "plain"): ("ABCD", "...."),
    ("tiny", "en", "quiz"): ("ABCA", "...."),
    ("tiny", "de", "plain"): ("AB-D", "..D."),
    ("tiny", "de", "quiz"): ("ACCD", "...."),
    ("tiny", "fr", "plain"): ("BBCD", "...."),
    ("tiny", "fr", "quiz"): ("-BAD", "C..."),
    ("small", "en", "plain"): ("ABCC", "...."),
    ("small", "en", "quiz"): ("ABDC", "...."),
    ("small", "de", "plain"): ("AACC", "...."),
    ("small", "de", "quiz"): ("AAC-", "...B"),
    ("small", "fr", "plain"): ("DBCC", "...."),
    ("small", "fr", "quiz"): ("DB-C", "..A."),
}
# (model, language, framing, item) -> the response text
RESPONSES = {
    ("tiny", "fr", "plain", "q1"): f"{XSS_SCRIPT}{XSS_IMG} B",
    ("tiny", "de", "quiz", "q2"): f"{XSS_TITLE}{XSS_IMG_TITLE} C",
    ("tiny", "fr", "quiz", "q1"): f"{XSS_IMG_TITLE}{XSS_SVG} I would rather not say.",
}
# refusals whose option probabilities are not confident (below the 0.5 threshold)
UNSURE = {("small", "fr", "quiz", "q3")}


def cell_id(model, lang, framing):
    return f"cell-{model}-{lang}-{framing}"


def make_plan(reports=None):
    cells = [
        {
            "id": cell_id(m, lang, fr),
            "study": "quiz",
            "axes": {"model": m, "dataset": "facts", "country": None, "language": lang, "framing": fr, "mode": "direct", "partition": None, "subset": None, "shots": 0, "seed": 0},
            "items": len(ITEMS),
            "estimate": {"requests": 2 * len(ITEMS), "prompt_tokens": 20 * len(ITEMS), "output_tokens": 5 * len(ITEMS)},
        }
        for (m, lang, fr) in ANSWERS
    ]
    return {
        "format": "xlspec-plan/2",
        "experiment": "tiny",
        "title": "Do two tiny models answer alike in three languages?",
        "versions": {"grammar": "1", "render": "1", "xlspec": "0.1.0"},
        "spec": {"path": "tiny.xls", "sha256": "0" * 64, "imports": []},
        "datasets": {},
        "models": {"tiny": {"source": "builtin:tiny", "engine": "hf"}, "small": {"source": "builtin:small", "engine": "hf"}},
        "framings": {},
        "modes": {},
        "names": {"languages": {"en": "English", "de": "Deutsch", "fr": "français"}},
        "studies": {
            "quiz": {
                "axes": {"model": ["tiny", "small"], "dataset": ["facts"], "language": LANGS, "framing": FRAMINGS, "mode": ["direct"]},
                "cells": len(cells),
                "answers": [{"kind": "options"}, {"kind": "generate", "parser": "option_letter"}],
                "samples": 1,
                "group_by": ["model", "dataset", "language", "framing", "mode"],
                "metrics": [
                    {"name": "accuracy", "args": {}, "label": "accuracy"},
                    {"name": "refusal_rate", "args": {}, "label": "refusal_rate"},
                    {"name": "logit_leakage", "args": {"threshold": 0.5}, "label": "logit_leakage(threshold=0.5)"},
                    {"name": "consistency", "args": {"over": "language"}, "label": "consistency(over=language)"},
                    {"name": "consistency", "args": {"over": "framing"}, "label": "consistency(over=framing)"},
                    {"name": "parity_gap", "args": {"metric": "accuracy"}, "label": "parity_gap(metric=accuracy)"},
                    {"name": "pivot_delta", "args": {"metric": "accuracy", "pivot": "en"}, "label": "pivot_delta(metric=accuracy, pivot=en)"},
                ],
            }
        },
        "reports": reports if reports is not None else [{"name": "html", "template": "report.html.j2"}, {"name": "markdown", "template": "report.md.j2"}],
        "totals": {"cells": len(cells), "requests": sum(c["estimate"]["requests"] for c in cells), "prompt_tokens": sum(c["estimate"]["prompt_tokens"] for c in cells),
                   "output_tokens": sum(c["estimate"]["output_tokens"] for c in cells), "languages": LANGS, "models": ["tiny", "small"]},
        "cells": cells,
    }


def make_rows():
    rows = []
    base = {
        "experiment": "tiny", "dataset": "facts", "country": None, "mode": "direct", "partition": None, "subset": None, "shots": 0, "sample": 0,
        "prompt": "Q?", "targets": None, "human": None, "scale_min": None, "scale_max": None, "prompt_tokens": 10, "engine": "hf", "error": None,
    }
    for (m, lang, fr), (gen, opt) in ANSWERS.items():
        for i, item in enumerate(ITEMS):
            g = gen[i]
            top = opt[i] if opt[i] != "." else g
            unsure = (m, lang, fr, item) in UNSURE
            probs = {k: (0.4 if k == top else 0.2) if unsure else (0.7 if k == top else 0.1) for k in "ABCD"}
            common = dict(base, cell_id=cell_id(m, lang, fr), model=m, item_id=item, language=lang, framing=fr, gold=GOLD[item])
            rows.append(dict(common, request_id=f"{m}-{lang}-{fr}-{item}-o", answer_kind="options", response=None, parsed_answer=top, refused=False,
                             option_logprobs=list({k: -1.0 for k in "ABCD"}.items()), option_probs=list(probs.items()),
                             output_tokens=0, finish_reason="length", latency_ms=1.0))
            response = RESPONSES.get((m, lang, fr, item), "I cannot answer that." if g == "-" else f"The answer is {g}.")
            rows.append(dict(common, request_id=f"{m}-{lang}-{fr}-{item}-g", answer_kind="generate", response=response, parsed_answer=None if g == "-" else g,
                             refused=g == "-", option_logprobs=None, option_probs=None, output_tokens=5, finish_reason="stop", latency_ms=2.0))
    return rows


def make_run(tmp_path, reports=None):
    """runs/tiny with results.parquet and manifest.json; the plan at <tmp>/build."""
    plan = make_plan(reports)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "tiny.plan.json").write_text(json.dumps(plan), encoding="utf-8")
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(make_rows(), schema=RESULTS_SCHEMA), run_dir / "results.parquet")
    manifest = {
        "experiment": "tiny",
        "plan": os.path.join("..", "..", "build", "tiny.plan.json"),
        "plan_hash": "f" * 64,
        "status": "complete",
        "limit": None,
        "rows": len(make_rows()),
        "versions": {"xlspec": "0.1.0", "python": "3.x", "pyarrow": "x"},
        "models": {"tiny": {"engine": "hf"}, "small": {"engine": "hf"}},
        "timings": {"total_s": 1.5},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return str(run_dir), Plan.from_data(plan)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run_dir, plan = make_run(tmp)
    t0 = time.perf_counter()
    lines = build_reports(run_dir, plan)
    return run_dir, plan, lines, time.perf_counter() - t0


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------- files


def test_build_reports_writes_metrics_and_both_reports(built):
    run_dir, plan, lines, seconds = built
    assert lines == [
        f"wrote {os.path.join(run_dir, 'metrics.parquet')} ({pq.read_metadata(os.path.join(run_dir, 'metrics.parquet')).num_rows} metric rows)",
        f"wrote {len(os.listdir(os.path.join(run_dir, 'charts')))} chart files (PDF, PNG at 300 dpi) in {os.path.join(run_dir, 'charts')}",
        f"wrote {os.path.join(run_dir, 'report.html')}",
        f"wrote {os.path.join(run_dir, 'report.md')}",
    ]
    assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp")]
    assert seconds < 20, f"build_reports took {seconds:.1f} s"


def test_metrics_parquet_has_one_row_per_metric_and_group(built):
    run_dir, plan, _, _ = built
    table = pq.read_table(os.path.join(run_dir, "metrics.parquet"))
    assert table.schema.equals(METRICS_SCHEMA)
    df = table.to_pandas()
    assert set(df["study"]) == {"quiz"}
    acc = df[df["metric"] == "accuracy"]
    assert len(acc) == 2 * 3 * 2  # model x language x framing
    row = acc[(acc.model == "tiny") & (acc.language == "en") & (acc.framing == "plain")].iloc[0]
    assert row["value"] == 1.0 and row["n"] == 4 and row["dataset"] == "facts" and row["mode"] == "direct"
    assert pd.isna(row["country"]) and pd.isna(row["seed"])  # not grouped
    cons = df[df["metric"] == "consistency(over=language)"]
    assert cons["language"].isna().all() and len(cons) == 4
    assert not df.duplicated(["study", "metric", "model", "dataset", "language", "framing", "mode"]).any()
    # a label's parts are columns of their own
    assert (cons["metric_name"] == "consistency").all() and cons["of_metric"].isna().all()
    assert all(dict(p) == {"over": "language"} for p in cons["params"])
    pivot = df[df["metric"] == "pivot_delta(metric=accuracy, pivot=en)"]
    assert len(pivot) and (pivot["metric_name"] == "pivot_delta").all() and (pivot["of_metric"] == "accuracy").all()
    assert all(dict(p) == {"pivot": "en"} for p in pivot["params"]) and pivot["contrast_axis"].isna().all()
    assert acc["metric_name"].eq("accuracy").all() and acc["params"].isna().all() and acc["output"].isna().all()


def test_metrics_parquet_reads_in_pandas_polars_and_duckdb(built):
    import duckdb
    import polars as pl

    run_dir, _, _, _ = built
    path = os.path.join(run_dir, "metrics.parquet")
    pandas_df = pd.read_parquet(path)
    polars_df = pl.read_parquet(path)
    con = duckdb.connect()
    rows = con.execute(f"SELECT metric, model, language, framing, value, n FROM read_parquet('{path}') WHERE metric = 'accuracy' ORDER BY model, language, framing").fetchall()
    assert len(pandas_df) == polars_df.height == con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
    expected = pandas_df[pandas_df.metric == "accuracy"].sort_values(["model", "language", "framing"])
    assert [r[4] for r in rows] == pytest.approx(list(expected["value"]))
    acc = polars_df.filter(pl.col("metric") == "accuracy").sort(["model", "language", "framing"])
    assert acc["n"].to_list() == [r[5] for r in rows]
    assert set(polars_df.columns) == set(pandas_df.columns)


def test_markdown_report_golden(built):
    run_dir, _, _, _ = built
    text = read(os.path.join(run_dir, "report.md"))
    assert "<" not in text.replace("\\<", "")  # no raw HTML: every < of a model output is escaped
    check_golden(GOLDEN, text)


class Elements(html.parser.HTMLParser):
    """Every start tag of a page with its attributes, as a browser's tokenizer sees them."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_footer_reads_as_one_sentence(built):
    run_dir, _, _, _ = built
    page = read(os.path.join(run_dir, "report.html"))
    footer = " ".join(re.sub(r"<[^>]+>", "", page[page.index("<footer>") : page.index("</footer>")]).split())
    assert "xlspec 0.1.0 · run time 1.5 s · confidence intervals" in footer


def test_html_escapes_model_outputs(built):
    run_dir, _, _, _ = built
    page = read(os.path.join(run_dir, "report.html"))
    for payload in (XSS_SCRIPT, XSS_IMG, XSS_TITLE, XSS_IMG_TITLE, XSS_SVG):
        assert payload not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    parser = Elements()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "img" not in tags and "iframe" not in tags
    handlers = [(t, k) for t, attrs in parser.tags for k in attrs if k.startswith("on")]
    assert handlers == []
    links = [(t, attrs) for t, attrs in parser.tags for k in ("src", "href", "xlink:href", "action") if k in attrs and not attrs[k].startswith("#")]
    # only plain links to the chart files written beside the report
    assert all(t == "a" and set(attrs) == {"href"} and attrs["href"].startswith("charts/") and os.path.exists(os.path.join(run_dir, attrs["href"])) for t, attrs in links), links
    assert tags.count("svg") >= 4
    # the page names no URL of its own: any http(s) in it is the escaped model output
    assert page.count("http://") == 0 and page.count("https://") == page.count("https://example.com/x&#34;&gt;link")


def test_no_plan_reports_renders_both_builtins_deterministically(tmp_path):
    run_dir, plan = make_run(tmp_path, reports=[])
    lines = build_reports(run_dir, plan, n_boot=50)
    assert [os.path.basename(ln.split(" ")[1]) for ln in lines if "chart files" not in ln] == ["metrics.parquet", "report.html", "report.md"]
    first = read(os.path.join(run_dir, "report.html"))
    charts = os.path.join(run_dir, "charts")
    files = {n: open(os.path.join(charts, n), "rb").read() for n in os.listdir(charts)}
    build_reports(run_dir, plan, n_boot=50)
    assert read(os.path.join(run_dir, "report.html")) == first  # charts included (svg.hashsalt)
    # the chart files too: no date in the PDF, no software version in the PNG
    assert {n: open(os.path.join(charts, n), "rb").read() for n in os.listdir(charts)} == files


def test_user_template_beside_the_spec_runs_sandboxed(tmp_path):
    reports = [
        {"name": "mine", "template": "reports/brief.txt.j2"},
        {"name": "evil", "template": "reports/evil.md.j2"},
    ]
    run_dir, plan = make_run(tmp_path, reports=reports)
    # the spec is build/tiny.xls (spec path "tiny.xls" relative to the plan's folder)
    (tmp_path / "build" / "reports").mkdir()
    (tmp_path / "build" / "reports" / "brief.txt.j2").write_text(
        "{{ experiment }}: {% for r in metrics if r.metric == 'accuracy' and r.model == 'tiny' and r.language == 'en' %}{{ r.framing }}={{ r.value|num }} {% endfor %}\nend\n", encoding="utf-8"
    )
    (tmp_path / "build" / "reports" / "evil.md.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    lines = build_reports(run_dir, plan, n_boot=50)
    assert read(os.path.join(run_dir, "report.txt")) == "tiny: plain=1.000 quiz=0.750 end\n"
    assert any(ln.startswith("error: report 'evil'") and "SecurityError" in ln for ln in lines), lines
    assert not os.path.exists(os.path.join(run_dir, "report.md"))


# ----------------------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class DevTools:
    """A minimal Chrome DevTools Protocol client over the page's websocket."""

    def __init__(self, url):
        import contextlib

        from websockets.sync.client import connect

        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(url, max_size=None, open_timeout=10))
        self.next_id = 0
        self.events = []

    def send(self, method, timeout=10, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.05, deadline - time.monotonic())))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.event(msg)

    def event(self, msg):
        if "method" not in msg:
            return  # the reply to a command nobody waits for (a dismissed dialog)
        self.events.append(msg)
        if msg["method"] == "Page.javascriptDialogOpening":
            # an alert() blocks the page: record it, close it, and let the test fail on it
            self.next_id += 1
            self.ws.send(json.dumps({"id": self.next_id, "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}))

    def wait_for(self, method, timeout=10):
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e["method"] == method:
                return e
        while time.monotonic() < deadline:
            try:
                msg = json.loads(self.ws.recv(timeout=max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
            self.event(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(f"no {method} within {timeout} s")

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                return
            self.event(msg)

    def evaluate(self, expression):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def close(self):
        self.stack.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_html_report_in_headless_chromium(built):
    """Chromium loads report.html from file:// with the DevTools protocol watching: the page
    loads, logs no error, requests nothing but itself, shows the charts, and none of the
    injected markup runs (it is shown as text)."""
    assert CHROMIUM is not None, "headless Chromium is missing: .ci/setup-system installs it (make test runs it)"
    run_dir, _, _, _ = built
    url = "file://" + os.path.abspath(os.path.join(run_dir, "report.html"))
    profile = tempfile.mkdtemp(prefix="xlspec-chromium-")
    port = free_port()
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
        "--metrics-recording-only", "--mute-audio", "--disable-features=Translate,MediaRouter,OptimizationHints",
        f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "--remote-allow-origins=*", "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    cdp = None
    try:
        page = None
        while time.monotonic() - t0 < 20 and page is None:
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as r:
                    targets = json.load(r)
                page = next((t for t in targets if t.get("type") == "page"), None)
            except OSError:
                time.sleep(0.1)
        assert page is not None, "chromium's DevTools endpoint did not come up"
        cdp = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Network", "Runtime", "Log"):
            cdp.send(f"{domain}.enable")
        cdp.send("Page.navigate", url=url)
        cdp.wait_for("Page.loadEventFired", timeout=15)
        cdp.drain(0.5)  # late events: a lazy image, an onerror handler, a timer

        requests = [e["params"]["request"]["url"] for e in cdp.events if e["method"] == "Network.requestWillBeSent"]
        assert requests == [url], f"the page made requests besides itself: {requests}"
        errors = [e["params"] for e in cdp.events if e["method"] == "Runtime.exceptionThrown"]
        errors += [e["params"] for e in cdp.events if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")]
        errors += [e["params"]["entry"] for e in cdp.events if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
        assert not errors, f"console errors: {errors}"
        dialogs = [e for e in cdp.events if e["method"] == "Page.javascriptDialogOpening"]
        assert not dialogs, f"a script ran: {dialogs}"

        state = cdp.evaluate(
            """(() => ({
                title: document.title,
                pwned: window.__pwned === undefined ? null : window.__pwned,
                scripts: document.scripts.length,
                imgs: document.images.length,
                svgs: document.querySelectorAll('svg.chart').length,
                heatmaps: [...document.querySelectorAll('figcaption')].filter(f => f.textContent.includes('language × framing')).length,
                external: [...document.querySelectorAll('[src], [href], [srcset], [action], [poster], [data]')]
                    .map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('srcset') || e.getAttribute('action') || '')
                    .filter(u => !u.startsWith('#')),
                handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on')),
                text: document.body.innerText,
                headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
            }))()"""
        )
        assert state["title"].startswith("tiny: Do two tiny models") and state["pwned"] is None, f"injected script ran: title {state['title']!r}, __pwned {state['pwned']!r}"
        assert state["scripts"] == 0 and state["imgs"] == 0 and state["handlers"] == []
        # links only to the chart files beside the report (nothing is fetched: see requests)
        assert state["external"] and all(u.startswith("charts/") for u in state["external"]), state["external"]
        assert all(os.path.exists(os.path.join(run_dir, u)) for u in state["external"])
        assert state["svgs"] >= 4 and state["heatmaps"] >= 2
        for payload in (XSS_SCRIPT, XSS_IMG, XSS_TITLE):
            assert payload in state["text"], f"{payload} is not shown as text"
        assert state["headings"][:2] == ["Summary", "Charts"]
        assert "Flipped items" in state["headings"] and "Refusals and leaked options" in state["headings"]
    finally:
        if cdp is not None:
            cdp.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    assert time.monotonic() - t0 < 30


def test_refusals_read_leaked_options_from_another_study():
    """A study that only generates shows the option its prompt's probabilities preferred,
    read from the study that scored the same prompts (a study asking `options + generate`)."""
    import copy

    plan = make_plan()
    rows = make_rows()
    plan["studies"]["written"] = copy.deepcopy(plan["studies"]["quiz"])
    plan["studies"]["written"]["metrics"] = [{"name": "refusal_rate", "args": {}, "label": "refusal_rate"}]
    plan["cells"] += [dict(c, id=c["id"] + "-w", study="written") for c in plan["cells"]]
    for r in rows:
        if r["answer_kind"] == "generate":
            r["cell_id"] += "-w"
    results = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA).to_pandas()
    refusals = [r for r in render_context(results, Plan.from_data(plan), n_boot=0)["refusals"] if r["study"] == "written"]
    # ANSWERS: tiny/de/plain q3 refused, its options row's top choice is D (0.7)
    one = next(r for r in refusals if (r["model"], r["language"], r["framing"], r["item_id"]) == ("tiny", "de", "plain", "q3"))
    assert one["leaked"] == "D" and one["p"] == pytest.approx(0.7)
    assert len(refusals) == 4 and all(r["leaked"] is not None for r in refusals)


def test_a_tie_across_languages_is_said_as_one_and_flips_count_items():
    """Every answer right in every language: no "highest in X, lowest in X" of one value.  The
    flipped-items count names distinct items, beside the cases (item x model x framing)."""
    plan = make_plan()
    rows = make_rows()
    for r in rows:  # every answer right
        r["parsed_answer"], r["refused"] = r["gold"], False
    results = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA).to_pandas()
    ctx = render_context(results, Plan.from_data(plan), n_boot=0)
    text = " ".join(s for study in ctx["summary"] for f in study["findings"] for s in ([f] if isinstance(f, str) else f.get("sentences", [])))
    assert "The same in all 3 languages: 1.000" in text, text
    assert "Highest in" not in text
    original = render_context(pa.Table.from_pylist(make_rows(), schema=RESULTS_SCHEMA).to_pandas(), Plan.from_data(plan), n_boot=0)
    assert original["samples_total"] == 12 and original["samples_items"] == 4
    # the study asks options and generate: the summary says which one accuracy reads
    assert "accuracy reads each item's generate answer where it has one, then options: the study asks 2 answer kinds" in text


# ----------------------------------------------------------------------------- chart files


def _png_size_and_dpi(path):
    """(width, height) in pixels and the dots per inch a PNG records (its pHYs chunk)."""
    import struct

    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    at = data.index(b"pHYs")
    ppm_x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert unit == 1  # pixels per metre
    return (width, height), round(ppm_x * 0.0254)


def test_chart_files_are_pdf_and_300_dpi_png_sized_for_a_paper(built):
    run_dir, _, _, _ = built
    folder = os.path.join(run_dir, "charts")
    names = sorted(os.listdir(folder))
    stems = sorted({n.rsplit(".", 1)[0] for n in names})
    assert names == sorted([f"{s}.pdf" for s in stems] + [f"{s}.png" for s in stems])
    assert any("per-language" in s for s in stems) and any("language-framing" in s for s in stems)
    for stem in stems:
        with open(os.path.join(folder, stem + ".pdf"), "rb") as f:
            assert f.read(5) == b"%PDF-"
        (w, h), dpi = _png_size_and_dpi(os.path.join(folder, stem + ".png"))
        assert dpi == 300
        assert w in (3.5 * 300, 7.0 * 300), (stem, w)  # one column, or the text width
        assert 0.3 * w < h < 1.2 * w


def test_headline_chart_shows_the_chance_level_as_a_dashed_line(built):
    """A screenshot check: the headline chart's PNG has one long row of the line's grey,
    broken into dashes, at the height of chance (0.25 of four options)."""
    from matplotlib.image import imread

    run_dir, _, _, _ = built
    folder = os.path.join(run_dir, "charts")
    png = next(os.path.join(folder, n) for n in sorted(os.listdir(folder)) if "accuracy-per-language" in n and n.endswith(".png"))
    img = imread(png)[:, :, :3]
    grey = np.all(np.abs(img - 0x44 / 255) < 0.06, axis=2)
    counts = grey.sum(1)
    row = int(counts.argmax())
    assert counts[row] > 0.4 * img.shape[1], "no long grey line"
    line = grey[row]
    runs = np.flatnonzero(np.diff(line.astype(int)) == 1)
    assert len(runs) >= 10, "the line is not dashed"
    html = read(os.path.join(run_dir, "report.html"))
    assert "a random guess scores 0.250" in html


def test_charts_draw_missing_values_as_missing_and_carry_a_colour_bar():
    from xlspec.runtime.report.charts import _rc, bars, heatmaps

    with _rc():
        fig = bars("t", ["en", "fr", "de"], ["m"], [[0.5, float("nan"), 0.2]], [[0.4, float("nan"), 0.1]], [[0.6, float("nan"), 0.3]], "accuracy")
        ax = fig.axes[0]
        assert len(ax.patches) == 2  # no bar of height 0 for the missing value
        assert "n/a" in [t.get_text() for t in ax.texts]
        fig = heatmaps("t", ["m1", "m2"], ["en", "fr"], ["plain"], [np.array([[0.5], [np.nan]]), np.array([[0.2], [0.9]])], True)
        assert len(fig.axes) == 3  # two panels and the colour bar
        bar = fig.axes[2]
        assert bar.get_ylim() == (0.0, 1.0)  # a share: one 0-1 scale for every panel
