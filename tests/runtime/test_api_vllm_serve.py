"""The openai engine against a real OpenAI-compatible server: vLLM's API server (the CPU
build) serving the embedded model on 127.0.0.1, started and stopped here.  The spec is
``specs/api_compare.xls`` (the same model in process and behind the server), with a second
study through plain completions (``chat = false``) for ``loglik``.  With the same weights
and greedy decoding, the two engines must give the same answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_STUDY = """
model local_base = vllm("builtin:smollm2-135m-instruct") { chat = false }
model served_base = openai("smollm2-135m-instruct") { base_url = "http://127.0.0.1:8011/v1"  chat = false }

framing completion {
  en = "Question: {question}\\nAnswer:"
  fr = "Question : {question}\\nRéponse :"
  es = "Pregunta: {question}\\nRespuesta:"
  de = "Frage: {question}\\nAntwort:"
}

study base {
  model = [local_base, served_base]
  dataset = facts
  language = european
  framing = completion
  mode = direct
  answer = loglik + generate(parser = text)
  metrics = [accuracy]
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: str, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}):\n{open(log).read()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the server did not start in {seconds} s:\n{open(log).read()[-3000:]}")


@pytest.mark.slow
def test_the_openai_engine_agrees_with_in_process_vllm(tmp_path, builtin_model):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    os.makedirs(tmp_path / "data")
    shutil.copy(os.path.join(ROOT, "specs", "data", "demo_facts.jsonl"), tmp_path / "data")
    spec = open(os.path.join(ROOT, "specs", "api_compare.xls"), encoding="utf-8").read()
    report_lines = [line for line in spec.splitlines() if line.startswith("report ")]
    spec = "\n".join(line for line in spec.splitlines() if not line.startswith("report ")) + BASE_STUDY
    (tmp_path / "api_compare.xls").write_text(spec.replace("127.0.0.1:8011", f"127.0.0.1:{port}"), encoding="utf-8")
    assert report_lines  # the shipped spec renders a report
    bin_dir = os.path.dirname(sys.executable)
    log = str(tmp_path / "server.log")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "xlspec.runtime.serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        subprocess.run([os.path.join(bin_dir, "xlspec"), "compile", "api_compare.xls"], cwd=tmp_path, check=True, capture_output=True)
        _wait_ready(url, server, log)
        run = subprocess.run([os.path.join(bin_dir, "xlspec"), "run", "build/api_compare.plan.json", "--limit", "6"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
    rows = pq.read_table(tmp_path / "runs" / "api_compare" / "results.parquet").to_pylist()
    assert not any(r["error"] for r in rows)
    by_key: dict = {}
    for r in rows:
        side = "api" if r["engine"] == "openai" else "local"
        by_key.setdefault((r["study"], r["item_id"], r["language"], r["answer_kind"]), {})[side] = r
    pairs = list(by_key.values())
    assert len(pairs) == len(rows) // 2 and all(len(p) == 2 for p in pairs)
    counts = {k: 0 for k in ("options", "generate", "loglik")}
    for p in pairs:
        local, api = p["local"], p["api"]
        kind = local["answer_kind"]
        counts[kind] += 1
        # a request may be retried on a loaded machine (a timeout, a dropped connection); the
        # retry logic has its own tests, and what matters here is that it ends in the same answer
        assert api["model_revision"] == url
        if kind in ("options", "loglik"):
            assert api["parsed_answer"] == local["parsed_answer"], (kind, local["item_id"], local["language"])
            lp_local, lp_api = dict(local["option_logprobs"]), dict(api["option_logprobs"])
            # a label outside the endpoint's top 20 tokens has no log-probability there: the
            # row says so and gives it probability 0
            missing = sorted(set(lp_local) - set(lp_api))
            if missing:
                assert kind == "options" and api["finish_reason"] == f"options; not in the top 20 tokens: {', '.join(missing)}"
                assert all(dict(api["option_probs"])[m] == 0.0 for m in missing)
            assert max(abs(lp_api[k] - lp_local[k]) for k in lp_api) < 1e-3, (kind, lp_local, lp_api)
        else:
            assert api["response"] == local["response"], (local["item_id"], local["language"], local["response"], api["response"])
    # 6 items x 4 languages per answer kind and study
    assert counts == {"options": 24, "generate": 48, "loglik": 24}
    # the report compares the two models
    report = (tmp_path / "runs" / "api_compare" / "report.md").read_text(encoding="utf-8")
    assert "served" in report and "local" in report
