"""xlspec against lm-evaluation-harness on the same multiple-choice job: time, memory and
agreement.

Writes one job for both tools from data made here (general-knowledge questions and
arithmetic in four languages, four options each, raw prompts "Question: ...\\nAnswer:"),
runs the two alternately on the embedded model's float32 weights, and prints, for each
run, whole-process wall time, CPU time and peak memory (PSS summed over the process tree,
Ray's processes included), then the medians and xlspec's ratio to lm-eval.  It then checks
that the two agree: every per-choice log-likelihood within 1e-3, and `acc` and `acc_norm`
equal item by item (so every accuracy equals lm-eval's).  Exits non-zero where they do not.

lm-evaluation-harness (0.4.13, with its hf extra) is installed in a virtualenv of its own,
``.venv-lmeval/``, the first time (it pins packages the xlspec environment needs
otherwise).

    python bench/vs_lmeval.py [--scale 1] [--runs 3] [--engine hf] [--batch-size 16] [--warm]
    python bench/vs_lmeval.py --install      # only set up .venv-lmeval/ (make test does)

``--scale 10`` is the same job with ten times the items.  ``--warm`` runs xlspec on a
cluster that ``xlspec up`` started and that keeps the model loaded from one run to the next
(the way to iterate on a spec): Ray's start and the model's load are then off each run's
path.  The cluster's processes count with xlspec's, CPU time spent during the run and
memory alike; ``xlspec up`` and the first run, which loads the model, are printed apart.  ``tests/test_vs_lmeval.py`` runs
the agreement check on a small job (:func:`compare`), so it cannot rot.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

LMEVAL_VENV = ROOT / ".venv-lmeval"
LMEVAL = "lm-eval[hf]==0.4.13"
TORCH = "torch==2.13.0"
MODEL = "builtin:smollm2-135m-instruct"
LANGUAGES = ("en", "fr", "es", "de")
QA = {"en": ("Question: {q}\nAnswer:"), "fr": "Question : {q}\nRéponse :", "es": "Pregunta: {q}\nRespuesta:", "de": "Frage: {q}\nAntwort:"}
SUM = {"en": "What is {a} plus {b}?", "fr": "Combien font {a} plus {b} ?", "es": "¿Cuánto es {a} más {b}?", "de": "Was ist {a} plus {b}?"}
PER_SCALE = 48
"""Items per language at scale 1 (the demo's 24 facts, then arithmetic)."""


def ensure_lmeval() -> pathlib.Path:
    """The ``lm_eval`` command of ``.venv-lmeval/``, installed first where the folder lacks
    this version (a marker file names what was installed)."""
    exe = LMEVAL_VENV / "bin" / "lm_eval"
    marker = LMEVAL_VENV / ".installed"
    wanted = f"{TORCH} {LMEVAL}"
    if not exe.exists() or not marker.exists() or marker.read_text(encoding="utf-8").strip() != wanted:
        print(f"installing {LMEVAL} into {LMEVAL_VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LMEVAL_VENV)], check=True)
        subprocess.run([str(LMEVAL_VENV / "bin" / "pip"), "install", "-q", TORCH, LMEVAL], check=True)
        marker.write_text(wanted + "\n", encoding="utf-8")
    return exe


def items(n: int) -> list[dict]:
    """``n`` questions with their prompt and four choices per language and a 0-based gold
    index: the demo's 24 facts, then arithmetic."""
    out = []
    with open(ROOT / "specs" / "data" / "demo_facts.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append({"id": d["id"], "prompt": {lang: QA[lang].format(q=d["question"][lang]) for lang in LANGUAGES},
                        "choices": {lang: d["options"][lang] for lang in LANGUAGES}, "gold": "ABCD".index(d["answer"])})
    k = 0
    while len(out) < n:
        a, b = 3 + (k * 7) % 89, 2 + (k * 13) % 97
        right = a + b
        choices = [right, right + 1 + k % 3, right - 2 - k % 5, right + 10]
        gold = k % 4
        choices[0], choices[gold] = choices[gold], choices[0]
        out.append({"id": f"sum-{k}", "prompt": {lang: QA[lang].format(q=SUM[lang].format(a=a, b=b)) for lang in LANGUAGES},
                    "choices": {lang: [str(c) for c in choices] for lang in LANGUAGES}, "gold": gold})
        k += 1
    return out[:n]


def write_job(folder: pathlib.Path, n: int, engine: str = "hf", batch_size: int = 16) -> list[str]:
    """The xlspec spec and data (``n`` items per language), and one lm-eval task per
    language; returns the task names."""
    data = items(n)
    with open(folder / "job.jsonl", "w", encoding="utf-8") as f:
        for d in data:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    (folder / "job.xls").write_text(
        'experiment job "xlspec and lm-evaluation-harness on one job"\n'
        f"languages langs = [{', '.join(LANGUAGES)}]\n"
        'dataset qa = jsonl("job.jsonl") { id = id  question = prompt[lang]  options = choices[lang]  gold = gold  gold_is = index }\n'
        'framing raw { default = "{question}" }\n'
        f'model smol = {engine}("{MODEL}") {{ chat = false  dtype = float32  batch_size = {batch_size} }}\n'
        "study mc {\n  model = smol\n  dataset = qa\n  language = langs\n  framing = raw\n"
        "  answer = loglik + loglik(normalize = chars)\n  metrics = [accuracy]\n}\n",
        encoding="utf-8",
    )
    tasks = []
    tasks_dir = folder / "tasks"
    tasks_dir.mkdir()
    for lang in LANGUAGES:
        path = tasks_dir / f"{lang}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for d in data:
                f.write(json.dumps({"id": d["id"], "prompt": d["prompt"][lang], "choices": d["choices"][lang], "gold": d["gold"]}, ensure_ascii=False) + "\n")
        name = f"xlspec_job_{lang}"
        (tasks_dir / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {path}\ntest_split: test\n"
            "output_type: multiple_choice\ndoc_to_text: \"{{prompt}}\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{gold}}\"\n"
            "target_delimiter: \" \"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n",
            encoding="utf-8",
        )
        tasks.append(name)
    return tasks


def cluster_processes() -> list[psutil.Process]:
    """The processes of a Ray cluster running on this machine (`xlspec up`): its GCS and
    raylet, Ray's Python helpers, and their children (the kept model's actor among them)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid != os.getpid() and (p.info["name"] in ("raylet", "gcs_server") or "/ray/" in cmd and "python" in cmd):
            found.append(p)
    return found


class TreeMeter:
    """Samples a process and its descendants, and the ``shared`` processes it uses (a running
    cluster's) and their descendants: CPU seconds spent while it runs (each process's last
    reading less its reading at the start, summed) and the peak of their summed PSS."""

    def __init__(self, pid: int, every: float = 0.5, shared: list[psutil.Process] | None = None):
        self.root = psutil.Process(pid)
        self.shared = shared or []
        self.cpu: dict[int, float] = {}
        self.base: dict[int, float] = {}
        for p in self._shared():
            try:
                t = p.cpu_times()
                self.base[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        self.peak = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _shared(self) -> list[psutil.Process]:
        out = []
        for p in self.shared:
            try:
                out += [p, *p.children(recursive=True)]
            except psutil.Error:
                continue
        return list({p.pid: p for p in out}.values())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            procs = list({p.pid: p for p in [*procs, *self._shared()]}.values())
            total = 0
            for p in procs:
                try:
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system - self.base.get(p.pid, 0.0)
                    total += p.memory_full_info().pss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return sum(self.cpu.values()), self.peak / 2**30


def timed(cmd: str, cwd: pathlib.Path, env: dict, shared: list[psutil.Process] | None = None) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    meter = TreeMeter(proc.pid, shared=shared)
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    cpu, peak = meter.stop()
    if proc.returncode != 0:
        sys.exit(f"`{cmd}` failed ({proc.returncode}):\n{out.decode(errors='replace')[-4000:]}")
    return {"wall": wall, "cpu": cpu, "pss_gb": peak, "log": out.decode(errors="replace")}


def lmeval_samples(out_dir: pathlib.Path, tasks: list[str]) -> dict:
    """(language, item id) -> (per-choice log-likelihoods, acc, acc_norm, the context)."""
    found = {}
    for task in tasks:
        lang = task.rsplit("_", 1)[1]
        files = sorted(out_dir.rglob(f"samples_{task}_*.jsonl"))
        if not files:
            sys.exit(f"lm-eval wrote no samples for {task} under {out_dir}")
        with open(files[-1], encoding="utf-8") as f:
            for line in f:
                s = json.loads(line)
                lls = [float(r[0][0]) for r in s["resps"]]
                args = s["arguments"]
                context = args["gen_args_0"]["arg_0"] if isinstance(args, dict) else args[0][0]
                found[(lang, s["doc"]["id"])] = (lls, float(s["acc"]), float(s["acc_norm"]), context)
    return found


def agreement(results: pathlib.Path, lm: dict) -> list[str]:
    import pandas as pd

    rows = pd.read_parquet(results)
    problems = []
    worst = 0.0
    for r in rows.itertuples():
        key = (r.language, r.item_id)
        lls, acc, acc_norm, context = lm[key]
        ours = [v for _k, v in sorted(dict(r.option_logprobs).items())]
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, lls)))
        if r.prompt != context:
            problems.append(f"{key}: prompts differ: {r.prompt!r} vs {context!r}")
        want = acc if r.normalize == "none" else acc_norm
        if bool(r.correct) != bool(want):
            problems.append(f"{key} normalize={r.normalize}: xlspec correct={r.correct}, lm-eval {'acc' if r.normalize == 'none' else 'acc_norm'}={want}")
    print(f"agreement: {len(rows)} rows; largest per-choice log-likelihood difference {worst:.2e}")
    if worst > 1e-3:
        problems.append(f"log-likelihoods differ by up to {worst:.2e} (> 1e-3)")
    for normalize, metric in (("none", "acc"), ("chars", "acc_norm")):
        sub = rows[rows.normalize == normalize]
        for lang in LANGUAGES:
            ours = sub[sub.language == lang].correct.mean()
            theirs = statistics.mean(v[1 if metric == "acc" else 2] for k, v in lm.items() if k[0] == lang)
            print(f"  {lang} {metric}: xlspec {ours:.4f}  lm-eval {theirs:.4f}")
            if not math.isclose(ours, theirs, abs_tol=1e-12):
                problems.append(f"{lang} {metric}: {ours} vs {theirs}")
    return problems


def commands(work: pathlib.Path, tasks: list[str], batch_size: int) -> dict[str, str]:
    """The two tools' command lines for the job in ``work``; ``{out}`` is a run's folder."""
    from xlspec.runtime.models import resolve_model

    model_path = resolve_model(MODEL)
    xlspec = pathlib.Path(sys.executable).parent / "xlspec"  # this environment's
    return {
        "lm-eval": (f"{LMEVAL_VENV / 'bin' / 'lm_eval'} --model hf --model_args pretrained={model_path},dtype=float32 --tasks {','.join(tasks)} "
                    f"--include_path {work / 'tasks'} --device cpu --batch_size {batch_size} --log_samples --output_path {{out}}"),
        "xlspec": f"{xlspec} compile job.xls && {xlspec} run build/job.plan.json --store {{out}}/store --runs-dir {{out}}",
    }


ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
"""Both tools run offline on the local model folder."""


def compare(tasks: list[str], lm_out: pathlib.Path, xl_out: pathlib.Path) -> list[str]:
    """What differs between the two runs' answers (nothing, where they agree)."""
    return agreement(xl_out / "job" / "results.parquet", lmeval_samples(lm_out, tasks))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval's --batch_size, and the xlspec model's batch_size")
    ap.add_argument("--warm", action="store_true", help="run xlspec on a cluster started by `xlspec up`, which keeps the model loaded between runs (its processes are measured with xlspec's)")
    ap.add_argument("--install", action="store_true", help=f"only install {LMEVAL} into {LMEVAL_VENV.name}/ if it is not there")
    args = ap.parse_args()
    ensure_lmeval()
    if args.install:
        return 0
    work = pathlib.Path(tempfile.mkdtemp(prefix="vs_lmeval_"))
    per_language = PER_SCALE * args.scale
    tasks = write_job(work, per_language, args.engine, args.batch_size)
    n_items = per_language * len(LANGUAGES)
    print(f"job: {n_items} items ({per_language} per language x {len(LANGUAGES)}), {4 * n_items} log-likelihood requests in lm-eval's terms; engine {args.engine}; {os.cpu_count()} CPUs", flush=True)
    cmds = commands(work, tasks, args.batch_size)
    shared = None
    if args.warm:
        xlspec_exe = pathlib.Path(sys.executable).parent / "xlspec"
        t0 = time.perf_counter()
        subprocess.run([str(xlspec_exe), "up", "--keep-loaded", "30"], check=True, env=ENV)
        up_s = time.perf_counter() - t0
        atexit.register(subprocess.run, [str(xlspec_exe), "down"], capture_output=True)
        shared = cluster_processes()
        first = work / "xlspec-first"
        first.mkdir()
        r = timed(cmds["xlspec"].format(out=first), work, ENV, shared)
        print(f"xlspec up: {up_s:.1f} s; the first run on it (loads the model, not counted): wall {r['wall']:.1f} s  cpu {r['cpu']:.1f} s", flush=True)
        shared = cluster_processes()
    results: dict[str, list[dict]] = {"lm-eval": [], "xlspec": []}
    for i in range(args.runs):
        for tool in ("lm-eval", "xlspec") if i % 2 == 0 else ("xlspec", "lm-eval"):
            out = work / f"{tool}-{i}"
            out.mkdir()
            r = timed(cmds[tool].format(out=out), work, ENV, shared if tool == "xlspec" else None)
            results[tool].append(r)
            print(f"run {i + 1} {tool:8s} wall {r['wall']:6.1f} s  cpu {r['cpu']:6.1f} s  peak PSS {r['pss_gb']:.2f} GB", flush=True)
            if tool == "xlspec":
                for line in r["log"].splitlines():
                    if "loaded in" in line or "already loaded" in line or "ray start" in line or ("requests/s" in line and "(" in line) or "result rows" in line or "wrote build" in line:
                        print("    " + line.strip())
    med = {t: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "pss_gb")} for t, rs in results.items()}
    for t, m in med.items():
        print(f"median {t:8s} wall {m['wall']:6.1f} s  cpu {m['cpu']:6.1f} s  peak PSS {m['pss_gb']:.2f} GB")
    print(f"xlspec / lm-eval: wall {med['xlspec']['wall'] / med['lm-eval']['wall']:.2f}x, cpu {med['xlspec']['cpu'] / med['lm-eval']['cpu']:.2f}x, memory {med['xlspec']['pss_gb'] / med['lm-eval']['pss_gb']:.2f}x")
    # the last run of each tool, compared
    last = args.runs - 1
    problems = compare(tasks, work / f"lm-eval-{last}", work / f"xlspec-{last}")
    for p in problems[:20]:
        print("DISAGREES: " + p)
    if not problems:
        print("agree: every log-likelihood within 1e-3; acc and acc_norm equal item by item")
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"(the job is kept in {work})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
