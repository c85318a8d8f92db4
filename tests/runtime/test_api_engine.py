"""The openai engine against real HTTP servers on loopback: a server of our own that fails in
a set order (429 with Retry-After, 5xx, slow answers, dropped connections), through the engine
alone and through ``xlspec run`` on real Ray; the key never written anywhere; SIGKILL mid-run.

The engine against a real ``vllm serve`` is in ``test_api_vllm_serve.py`` (slow)."""

from __future__ import annotations

import glob
import math
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from support.api_server import FaultServer
from support.projects import Project
from xlspec.lower import EngineRequest
from xlspec.runtime.engines import ENGINES, EngineConfig
from xlspec.runtime.scheduler import RunError, run_plan
from xlspec.runtime.store import AnswerStore
from xlspec.spec import ModelSpec

KEY = "sk-test-4f1d9c2b7a5e4e0f8c3d2b1a0f9e8d7c"
KEY_ENV = "XLSPEC_TEST_API_KEY"


def engine(url: str, secrets: dict | None = None, **settings):
    model = ModelSpec(engine="openai", source="fake", base_url=url, **settings)
    return ENGINES["openai"].load(EngineConfig(name="api", model=model, secrets=secrets or {}))


def generate(i: int) -> EngineRequest:
    return EngineRequest(f"r{i}", f"prompt {i}", "generate", max_tokens=4)


def test_faults_in_order_are_retried_and_counted():
    script = ["429", "ok", "500", "503", "ok", "drop", "ok", "slow", "ok", "500", "500", "500"]
    with FaultServer(script, retry_after="1", slow_s=2.5) as server:
        eng = engine(server.url, concurrency=1, max_retries=2, timeout=1)
        start = time.perf_counter()
        # one request at a time, so each meets the faults the script lines up for it
        results = [eng.run([generate(i)])[0] for i in range(6)]
        elapsed = time.perf_counter() - start
    assert [r.retries for r in results] == [1, 2, 1, 1, 2, 0]
    assert [r.error is None for r in results] == [True, True, True, True, False, True]
    assert [r.response for r in results if r.error is None] == ["The answer is B."] * 5
    failed = results[4].error
    assert "HTTP 500" in failed and "after 2 retries" in failed
    assert server.seen["ok"] == 5 and not server.script
    # Retry-After: 1 was honoured (one second), the timeout took one more
    assert elapsed >= 2.0


def test_a_4xx_is_not_retried_and_the_key_never_reaches_an_error():
    with FaultServer(["401"], key=KEY) as server:
        results = engine(server.url, secrets={KEY_ENV: KEY}, api_key_env=KEY_ENV).run([generate(0), generate(1)])
    failed = next(r for r in results if r.error)
    assert failed.retries == 0 and "HTTP 401" in failed.error
    assert KEY not in failed.error and "[API key]" in failed.error
    assert sum(r.error is None for r in results) == 1


def test_options_from_top_logprobs_report_missing_labels():
    with FaultServer() as server:
        eng = engine(server.url)
        ok, missing, none = eng.run([
            EngineRequest("a", "q", "options", options=("A", "B", "C", "D")),
            EngineRequest("b", "q", "options", options=("A", "B", "E")),
            EngineRequest("c", "q", "options", options=("X", "Y")),
        ])
    # " B" and "B" are one label: their probabilities add up
    assert ok.response == "B" and abs(ok.option_logprobs["B"] - math.log(math.exp(-0.2) + math.exp(-2.5))) < 1e-9
    assert abs(sum(ok.option_probs.values()) - 1) < 1e-9 and ok.finish_reason == "options"
    assert missing.option_probs["E"] == 0.0 and "E" not in missing.option_logprobs and missing.finish_reason.endswith("not in the top 5 tokens: E")
    assert none.error and "none of the option labels X, Y" in none.error


def test_loglik_counts_the_option_tokens_whatever_text_comes_before():
    """The echoed text starts with a BOS token's text, which shifts every text offset: the
    option is found from the end of the echoed text, not from the prompt's length."""
    with FaultServer() as server:
        result, = engine(server.url).run([EngineRequest("l", "The capital is", "loglik", options=(" Paris", " the city of Lyon"), chat=False)])
    assert result.error is None
    # tokens: <s>, The, capital, is, option words...; logprobs -0.5 per position from "The"
    assert result.option_logprobs == {" Paris": -2.0, " the city of Lyon": -2.0 - 2.5 - 3.0 - 3.5}
    # the token counts go with the sums, so every normalisation can be read off the answer
    assert result.option_tokens == {" Paris": 1, " the city of Lyon": 4}


def test_a_retry_after_that_is_not_a_number_is_ignored_and_a_bad_key_is_never_sent():
    with FaultServer(["429", "ok"], retry_after="nan") as server:
        start = time.perf_counter()
        result, = engine(server.url, max_retries=1).run([generate(0)])
        assert result.error is None and result.retries == 1 and time.perf_counter() - start < 5
        # a key with a line break cannot go in a header: refused, not retried, not quoted
        bad, = engine(server.url, secrets={KEY_ENV: KEY + "\r"}, api_key_env=KEY_ENV).run([generate(1)])
    assert bad.error and bad.retries == 0 and KEY not in bad.error and "cannot be sent" in bad.error


def test_a_key_with_a_control_character_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY[:8] + "\t" + KEY[8:])
    p = Project(tmp_path)
    p.write_data()
    _plan, path = p.compile(engine="openai", model_settings=f'base_url = "http://127.0.0.1:9/v1"  api_key_env = "{KEY_ENV}"', answer="generate(parser = option_letter)")
    with pytest.raises(RunError, match="control character") as e:
        run_plan(path, runs_dir=str(p.runs))
    assert KEY[8:] not in str(e.value)


def test_a_missing_key_stops_the_run_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    p = Project(tmp_path)
    p.write_data()
    _plan, path = p.compile(engine="openai", model_settings=f'base_url = "http://127.0.0.1:9/v1"  api_key_env = "{KEY_ENV}"', answer="generate(parser = option_letter)")
    with pytest.raises(RunError, match=f"environment variable {KEY_ENV}, which is not set"):
        run_plan(path, runs_dir=str(p.runs))
    assert not p.runs.exists() or not glob.glob(str(p.runs / "**" / "*.parquet"), recursive=True)


def _texts_of(path: str) -> str:
    """Every string a file holds: its bytes, and for Parquet each string value (compressed on
    disk, so a byte search alone would miss them)."""
    raw = open(path, "rb").read()
    out = [raw.decode("utf-8", "replace")]
    if path.endswith(".parquet"):
        try:
            out.append(repr(pq.read_table(path).to_pylist()))
        except Exception:  # noqa: BLE001 - a file being written; its bytes were read
            pass
    return "\n".join(out)


def test_a_run_through_faults_ends_every_request_and_never_writes_the_key(tmp_path, monkeypatch, ray_cluster, capfd):
    monkeypatch.setenv(KEY_ENV, KEY)
    # 20 requests at 4 at a time; the scripted faults fall on whichever requests come first,
    # and the two about snow fail every time (their retries run out)
    script = ["429", "500", "drop", "503", "500", "500", "500", "500", "drop", "429"]
    with FaultServer(script, key=KEY, retry_after="0", fail_when=("snow",)) as server:
        p = Project(tmp_path)
        p.write_data()
        settings = f'base_url = "{server.url}"  api_key_env = "{KEY_ENV}"  concurrency = 4  max_retries = 2'
        plan, path = p.compile(engine="openai", model_settings=settings, answer="generate(parser = option_letter)")
        report = run_plan(path, runs_dir=str(p.runs))
        rows = pq.read_table(p.runs / "tiny" / "results.parquet").to_pylist()
        assert len(rows) == 20
        errors = [r for r in rows if r["error"]]
        answered = [r for r in rows if not r["error"]]
        assert all(r["response"] == "The answer is B." and r["parsed_answer"] == "B" for r in answered)
        # every fault is a retry of a request that was answered, or the last try of one that failed
        faults = sum(n for b, n in server.seen.items() if b != "ok")
        assert faults == len(script) + 2 * 3 and not server.script
        assert sum(r["retries"] for r in rows) + len(errors) == faults
        assert sorted((r["item_id"], r["retries"]) for r in errors) == [("q2", 2), ("q2", 2)]
        assert all("HTTP 500" in r["error"] and "after 2 retries" in r["error"] for r in errors)
        assert server.seen["ok"] == len(answered) == 18 and not report.complete
        # the next run sends only the failed requests again
        server.fail_when = ()
        report2 = run_plan(path, runs_dir=str(p.runs))
        assert report2.complete and server.seen["ok"] == 20
        rows2 = pq.read_table(p.runs / "tiny" / "results.parquet").to_pylist()
        assert not any(r["error"] for r in rows2)
        assert {r["model_source"] for r in rows2} == {"x"} and {r["model_revision"] for r in rows2} == {server.url}
        assert all(r["engine_prompt"].startswith('[{"role": "user"') for r in rows2)
    out, err = capfd.readouterr()
    places = [str(p.root)] + glob.glob("/tmp/ray/session_latest/logs/*")
    files = [f for place in places for f in ([place] if os.path.isfile(place) else glob.glob(os.path.join(place, "**", "*"), recursive=True)) if os.path.isfile(f)]
    assert any(f.endswith("results.parquet") for f in files) and any(f.endswith(".plan.json") for f in files)
    leaked = [f for f in files if KEY in _texts_of(f)]
    assert not leaked
    assert KEY not in out + err


def test_sigkill_mid_run_loses_nothing(tmp_path, monkeypatch):
    """``xlspec run`` killed while requests are in flight: what was journaled is kept, the
    next run sends only the rest, and the results equal an uninterrupted run's."""
    with FaultServer(delay_s=0.15) as server:
        p = Project(tmp_path)
        p.write_data()
        # 30 requests, one at a time: engine calls of 16, the first journaled after ~2.4 s
        _plan, path = p.compile(engine="openai", model_settings=f'base_url = "{server.url}"  concurrency = 1', languages="en, fr, de", answer="generate(parser = option_letter)")
        cmd = [os.path.join(os.path.dirname(sys.executable), "xlspec"), "run", path, "--runs-dir", str(p.runs)]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        while server.seen["ok"] < 20 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # Ray stops the dead driver's engine actor within moments; wait until the server
        # hears nothing more
        first = -1
        while first != server.seen["ok"]:
            first = server.seen["ok"]
            time.sleep(2)
        kept = len(AnswerStore(str(p.store)).answers())
        assert 16 <= kept < 30 and first >= 20
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=300)
        assert server.seen["ok"] - first == 30 - kept
        rows = pq.read_table(p.runs / "tiny" / "results.parquet").to_pylist()
        assert len(rows) == 30 and not any(r["error"] for r in rows)
        assert len({r["request_id"] for r in rows}) == 30


def test_the_obvious_duckdb_query_gives_the_reported_accuracy(tmp_path, ray_cluster):
    """Refusals are wrong answers: ``avg(correct::int)`` per group equals the report's
    accuracy, where ``avg(parsed_answer = gold)`` skips the refusals (their NULLs)."""
    import duckdb

    from xlspec import plan as planmod
    from xlspec.runtime.report import build_reports

    def reply(prompt: str) -> str:
        return "I would rather not say." if prompt.startswith("Quiz") and "fruit" not in prompt else "The answer is A."

    with FaultServer(reply=reply) as server:
        p = Project(tmp_path)
        p.write_data()
        _plan, path = p.compile(engine="openai", model_settings=f'base_url = "{server.url}"', answer="generate(parser = option_letter)")
        assert run_plan(path, runs_dir=str(p.runs)).complete
    run_dir = str(p.runs / "tiny")
    build_reports(run_dir, planmod.load(path), path)
    con = duckdb.connect()
    results, metrics = os.path.join(run_dir, "results.parquet"), os.path.join(run_dir, "metrics.parquet")
    by_query = dict(con.execute(f"SELECT language || '/' || framing, avg(correct::int) FROM read_parquet('{results}') GROUP BY 1").fetchall())
    naive = dict(con.execute(f"SELECT language || '/' || framing, avg((parsed_answer = gold)::int) FROM read_parquet('{results}') GROUP BY 1").fetchall())
    reported = dict(con.execute(f"SELECT language || '/' || framing, value FROM read_parquet('{metrics}') WHERE metric_name = 'accuracy' AND model IS NOT NULL").fetchall())
    assert by_query == pytest.approx(reported) and set(reported) == {"en/plain", "en/quiz", "fr/plain", "fr/quiz"}
    # gold is A for 4 of 5 items; under the quiz framing only the fruit question is answered
    # (rightly): 1 of 5 right, where the naive query sees 1 of 1
    assert reported["en/plain"] == pytest.approx(0.8) and reported["en/quiz"] == pytest.approx(0.2)
    assert naive["en/quiz"] == 1.0 and naive["en/plain"] == pytest.approx(0.8)
    refused = con.execute(f"SELECT count(*) FROM read_parquet('{results}') WHERE refused AND correct = false").fetchone()[0]
    assert refused == 8
