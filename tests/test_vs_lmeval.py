"""xlspec's loglik answers against lm-evaluation-harness on one small job: the agreement
check of ``bench/vs_lmeval.py`` (per-choice log-likelihoods within 1e-3, ``acc`` and
``acc_norm`` equal item by item, identical prompts), so the comparison cannot rot.

lm-evaluation-harness lives in a virtualenv of its own, ``.venv-lmeval/``, which
``make test`` sets up (``python bench/vs_lmeval.py --install``).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    spec = importlib.util.spec_from_file_location("vs_lmeval", os.path.join(ROOT, "bench", "vs_lmeval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_loglik_answers_agree_with_lm_evaluation_harness(tmp_path, builtin_model):
    bench = _bench()
    assert (bench.LMEVAL_VENV / "bin" / "lm_eval").exists(), f"{bench.LMEVAL} is not installed: `make test` (or `python bench/vs_lmeval.py --install`) puts it in {bench.LMEVAL_VENV}"
    # 24 facts and 4 sums per language: options of one and of several tokens, digits
    tasks = bench.write_job(tmp_path, 28, batch_size=16)
    cmds = bench.commands(tmp_path, tasks, 16)
    for tool in ("lm-eval", "xlspec"):
        out = tmp_path / tool
        out.mkdir()
        cmd = cmds[tool].format(out=out) + (" --no-report" if tool == "xlspec" else "")
        proc = subprocess.Popen(cmd, shell=True, cwd=tmp_path, env=bench.ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:  # the tool and the processes it started (Ray's) go
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 0, f"{tool}: {out[-5000:]}"
    problems = bench.compare(tasks, tmp_path / "lm-eval", tmp_path / "xlspec")
    assert problems == []
    # the check can fail: a moved log-likelihood is found
    import pyarrow as pa
    import pyarrow.parquet as pq

    results = tmp_path / "xlspec" / "job" / "results.parquet"
    table = pq.read_table(results)
    rows = table.to_pylist()
    rows[0]["option_logprobs"] = [(k, v + 0.01) for k, v in rows[0]["option_logprobs"]]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), results)
    assert any("differ by up to" in p for p in bench.compare(tasks, tmp_path / "lm-eval", tmp_path / "xlspec"))
