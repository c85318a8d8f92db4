"""`xlspec up`: a Ray cluster that keeps models loaded from one run to the next.

The names of kept models are checked on their own; the whole path runs on a real cluster
started by `xlspec up`, with the hf engine and the embedded model.
"""

import json
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from xlspec.runtime import cluster
from xlspec.runtime.engines.base import EngineConfig
from xlspec.spec import ModelSpec


def config(**changes) -> EngineConfig:
    model = ModelSpec(engine="hf", source="builtin:smollm2-135m-instruct", **changes)
    return EngineConfig(name="smol", model=model)


def name(cfg=None, settings=None, env=None, options=None) -> str:
    cfg = cfg or config()
    if settings is not None:
        cfg = EngineConfig(name=cfg.name, model=cfg.model, settings=settings)
    return cluster.kept_name(cfg, "hf", options or {"num_cpus": 2, "num_gpus": 0}, 2, env or {}, 0)


def test_a_kept_model_is_named_by_what_its_answers_depend_on(monkeypatch):
    base = name()
    assert base == name() and base.startswith("model-smol-") and base.endswith("-0")
    assert name(config(dtype="bfloat16")) != base
    assert name(settings={"batch_tokens": 512}) != base
    assert name(env={"XLSPEC_HF_ARGS": "{}"}) != base
    assert name(options={"num_cpus": 1, "num_gpus": 0}) != base
    monkeypatch.setattr(cluster, "_CODE", "another version of xlspec")
    assert name() != base


def test_local_weights_changed_in_place_are_loaded_again(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    cfg = EngineConfig(name="m", model=ModelSpec(engine="hf", source=str(tmp_path)))
    before = name(cfg)
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert name(cfg) != before


class FakeRay:
    def __init__(self, nodes):
        self._nodes = nodes

    def nodes(self):
        return self._nodes


def test_the_keep_time_is_the_cluster_label():
    label = cluster.KEEP_LOADED_LABEL
    assert cluster.kept_seconds(FakeRay([{"Alive": True, "Labels": {label: "90"}}])) == 90.0
    assert cluster.kept_seconds(FakeRay([{"Alive": True, "Labels": {}}])) is None
    assert cluster.kept_seconds(FakeRay([{"Alive": False, "Labels": {label: "90"}}])) is None
    assert cluster.kept_seconds(FakeRay([{"Alive": True, "Labels": {label: "soon"}}])) is None


def test_a_kept_model_whose_load_failed_is_loaded_afresh(ray_cluster, tmp_path, monkeypatch):
    """A kept actor whose load failed in an earlier run that stopped before it saw the error
    (Ctrl-C during the load) is not reported with its old error: the next run releases it
    and loads the model again."""
    import io

    from support import fake_engine
    from support.projects import new_project
    from xlspec.runtime.scheduler import Progress, _actor_class, run_plan

    ray = ray_cluster
    flag = tmp_path / "cannot-load"
    flag.write_text("", encoding="utf-8")
    engine = fake_engine.load_fails_while(str(flag))
    name = "model-m-test-0"
    monkeypatch.setattr(cluster, "kept_seconds", lambda ray: 60.0)
    monkeypatch.setattr(cluster, "kept_name", lambda *args: name)
    project = new_project(tmp_path / "p")
    plan, path = project.compile()
    info = __import__("xlspec.runtime.engines.base", fromlist=["ENGINES"]).ENGINES[engine]
    stale = _actor_class(ray).options(name=name, namespace=cluster.KEPT_NAMESPACE, lifetime="detached", num_cpus=0).remote(info, EngineConfig(name="m", model=plan.models["m"]), None, 60.0)
    try:
        assert ray.get(stale.ready.remote())[1].startswith("RuntimeError: cannot load")
        flag.unlink()  # fixed: the model loads now
        log = io.StringIO()
        report = run_plan(path, str(project.runs), engine_override=engine, progress=Progress(log))
        assert report.complete, log.getvalue()
        assert "[m] loaded in" in log.getvalue() and "could not load" not in log.getvalue()
    finally:
        for kept in cluster.kept_actors(ray):
            ray.kill(ray.get_actor(kept, namespace=cluster.KEPT_NAMESPACE), no_restart=True)


# ---- on a real cluster ---------------------------------------------------------------------

CACHE = os.environ.get("XLSPEC_TEST_CACHE", os.path.join(ROOT, ".xlspec-cache"))
XLSPEC = [sys.executable, "-m", "xlspec.cli"]
KEEP_MINUTES = 0.5


def xlspec(args, cwd):
    env = dict(os.environ, XLSPEC_CACHE=CACHE, XLSPEC_PLAIN_PROGRESS="1")
    r = subprocess.run(XLSPEC + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"xlspec {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def kept_on_cluster() -> list[str]:
    code = "import json, ray; ray.init(logging_level='ERROR'); from xlspec.runtime.cluster import kept_actors; print(json.dumps(kept_actors(ray)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_only_idle_kept_models_are_released_least_recently_used_first(monkeypatch):
    """A kept model answering a call (another run's) is never released; idle ones go, the
    longest idle first, until what the new model needs is free."""
    free = {"CPU": 0.0}

    class Actor:
        def __init__(self, name, idle, cpus):
            self.name, self.idle, self.cpus = name, idle, cpus
            self.idle_for = self

        def remote(self):
            return self.idle

    actors = {a.name: a for a in (Actor("model-a-1-0", 5.0, 2.0), Actor("model-b-1-0", None, 2.0), Actor("model-c-1-0", 50.0, 2.0), Actor("model-w-1-0", 90.0, 2.0))}
    killed = []

    class Ray:
        def available_resources(self):
            return dict(free)

        def get_actor(self, name, namespace):
            return actors[name]

        def get(self, value, timeout):
            return value

        def kill(self, actor, no_restart):
            killed.append(actor.name)
            free["CPU"] += actor.cpus

    monkeypatch.setattr(cluster, "kept_actors", lambda ray: sorted(actors))
    released = cluster.release_for(Ray(), {"model-w-1-0"}, {"CPU": 2.0, "GPU": 0.0}, settle_s=0)
    assert released == [("model-c-1-0", "CPUs")] and killed == ["model-c-1-0"]
    free["CPU"] = 0.0
    assert cluster.release_for(Ray(), {"model-w-1-0"}, {"CPU": 4.0, "GPU": 0.0}, settle_s=0) == [("model-c-1-0", "CPUs"), ("model-a-1-0", "CPUs")]
    assert "model-b-1-0" not in killed  # busy
    assert cluster.plan_name("model-my-model-0123456789abcdef-0") == "my-model"


def logprobs(project, runs):
    table = pq.read_table(project / runs / "demo" / "results.parquet").to_pandas().sort_values(["cell_id", "item_id", "request_id"])
    return [dict(x) for x in table["option_logprobs"]]


@pytest.mark.slow
def test_a_kept_model_serves_later_runs_and_leaves_when_idle(tmp_path, builtin_model):
    import shutil

    project = tmp_path / "proj"
    shutil.copytree(os.path.join(ROOT, "specs"), project / "specs")
    xlspec(["compile", "specs/demo.xls"], project)
    assert "keeps each model loaded" in xlspec(["up", "--keep-loaded", str(KEEP_MINUTES)], project)
    try:
        run = ["run", "build/demo.plan.json", "--limit", "2", "--no-report"]
        first = xlspec([*run, "--runs-dir", "runs1"], project)
        assert "loaded in" in first and "already loaded" not in first
        assert f"keeps models loaded {KEEP_MINUTES:g} min" in first

        # A second run (another store: everything is computed again) finds the model loaded.
        second = xlspec([*run, "--runs-dir", "runs2"], project)
        assert "already loaded (kept by the cluster from an earlier run)" in second
        assert "loading builtin" not in second
        assert logprobs(project, "runs2") == logprobs(project, "runs1")

        # A second model that needs the CPUs the first one holds releases it.
        spec = project / "specs" / "demo.xls"
        text = spec.read_text(encoding="utf-8")
        text = text.replace('model smol = hf("builtin:smollm2-135m-instruct") { chat = false }',
                            'model smol = hf("builtin:smollm2-135m-instruct") { chat = false }\n'
                            'model tiny = hf("builtin:smollm2-135m-instruct") { chat = false  batch_size = 4 }')
        text = text.replace("study letters {\n  model = smol", "study letters {\n  model = tiny")
        spec.write_text(text, encoding="utf-8")
        xlspec(["compile", "specs/demo.xls"], project)
        third = xlspec([*run, "--runs-dir", "runs3"], project)
        assert "[smol] already loaded" in third
        assert "[tiny] released the kept model smol to free its CPUs" in third
        assert "[tiny] loaded in" in third
        assert [n.rsplit("-", 2)[0] for n in kept_on_cluster()] == ["model-tiny"]

        # An idle model gives its memory back after the cluster's keep time.
        deadline = time.time() + KEEP_MINUTES * 60 + 30
        while kept_on_cluster() and time.time() < deadline:
            time.sleep(2)
        assert kept_on_cluster() == []
    finally:
        subprocess.run(XLSPEC + ["down"], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_up_twice_says_what_to_do(tmp_path):
    """A second `xlspec up` on a machine where one runs is one line, not Ray's traceback."""
    first = subprocess.run(XLSPEC + ["up", "--keep-loaded", "1"], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    try:
        second = subprocess.run(XLSPEC + ["up"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr.strip() == "xlspec up: a Ray cluster already runs on this machine; `xlspec down` (or `ray stop`) stops it first"
    finally:
        down = subprocess.run(XLSPEC + ["down"], capture_output=True, text=True, timeout=120)
    assert down.stdout.strip() == "stopped the Ray cluster on this machine and the models it kept"
    again = subprocess.run(XLSPEC + ["down"], capture_output=True, text=True, timeout=120)
    assert again.stdout.strip() == "no Ray cluster runs on this machine"
