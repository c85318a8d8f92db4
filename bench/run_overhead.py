"""What xlspec's runtime costs over driving the engine by hand, for the same prompts.

Prints, for one plan (default: the demo, with --limit):
  1. `xlspec run` wall time (fresh store) vs a hand-written loop over the same engine with the
     same batch size; Ray start-up is reported separately and left out of the ratio
     (target ratio <= 1.15);
  2. a no-op re-run of the unchanged plan (target under 5 s);
  3. an incremental re-run after editing one framing's text: its time and requests as a share
     of the full run (skipped with --no-incremental, e.g. where specs cannot be compiled).

With --engine vllm --bare-vllm the hand-written loop is a bare ``vllm.LLM.generate`` over the
same prompts and sampling parameters (the GPU comparison); add --dummy for
random weights (``load_format="dummy"``) where the real weights cannot be carried.

    python bench/run_overhead.py [--limit 6] [--engine hf]
    python bench/run_overhead.py --plan bench/gpu/build/gpu_throughput.plan.json \\
        --engine vllm --bare-vllm --dummy --no-incremental
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def xlspec(args: list[str], cwd: str, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "xlspec.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0,):
        sys.exit(f"xlspec {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return wall, r.stdout


def manifest(project: str, experiment: str) -> dict:
    with open(os.path.join(project, "runs", experiment, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def requests_of(plan_path: str, limit: int | None):
    from xlspec import plan as planmod
    from xlspec.lower import DataCache, cell_requests

    plan = planmod.load(plan_path)
    data = DataCache(plan, plan_path)
    seen, out = set(), []
    for cell in plan.cells:
        for cr in cell_requests(plan, cell, data, limit):
            if cr.request.request_id not in seen:
                seen.add(cr.request.request_id)
                out.append(cr.request)
    return plan, out


def hand_loop(plan, requests, engine: str, settings: dict) -> tuple[float, float, int]:
    """(load seconds, inference seconds, output tokens) driving the engine class directly."""
    from xlspec.answers import ANSWER_KINDS
    from xlspec.runtime.engines import EngineConfig, make_engine

    (name, model), = plan.models.items()
    config = EngineConfig(name=name, model=model.model_copy(update={"engine": engine}), settings=settings)
    t0 = time.perf_counter()
    eng = make_engine(config)
    load = time.perf_counter() - t0
    reqs = sorted(requests, key=lambda r: (ANSWER_KINDS[r.kind].engine_order, r.prompt))
    size = model.batch_size if engine == "hf" else len(reqs)
    t0 = time.perf_counter()
    tokens = 0
    for i in range(0, len(reqs), size):
        tokens += sum(r.output_tokens for r in eng.run(reqs[i : i + size]))
    return load, time.perf_counter() - t0, tokens


def bare_vllm(plan, requests, llm_args: dict) -> tuple[float, float, int]:
    """A bare LLM.generate over the same prompts (chat-templated where the model chats) and
    sampling parameters (a loglik request: one prompt + option per option), with
    the same extra ``vllm.LLM`` arguments xlspec was given (XLSPEC_VLLM_ARGS)."""
    import vllm
    from xlspec.runtime.models import resolve_model

    (name, model), = plan.models.items()
    path = str(resolve_model(model.source))
    t0 = time.perf_counter()
    llm = vllm.LLM(model=path, enable_prefix_caching=True, **llm_args)
    load = time.perf_counter() - t0
    tok = llm.get_tokenizer()
    prompts, params = [], []
    for r in requests:
        text = tok.apply_chat_template([{"role": "user", "content": r.prompt}], tokenize=False, add_generation_prompt=True) if r.chat else r.prompt
        if r.kind == "loglik":  # prompt + each option, scored by its prompt log-probabilities
            for option in r.options:
                prompts.append(text + option)
                params.append(vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))
            continue
        prompts.append(text)
        if r.kind == "generate":
            params.append(vllm.SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, top_p=r.top_p, seed=r.seed))
        else:
            params.append(vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(r.options)))
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    infer = time.perf_counter() - t0
    return load, infer, sum(len(o.outputs[0].token_ids) for o in outs if o.outputs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", default=None, help="a compiled plan (default: compile specs/demo.xls in a temp copy)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    ap.add_argument("--bare-vllm", action="store_true")
    ap.add_argument("--dummy", action="store_true")
    ap.add_argument("--no-incremental", action="store_true")
    args = ap.parse_args()
    if args.plan is None and args.limit is None:
        args.limit = 6

    work = tempfile.mkdtemp(prefix="xlspec-bench-")
    env = dict(os.environ, XLSPEC_PLAIN_PROGRESS="1")
    if args.dummy:
        extra = json.loads(env.get("XLSPEC_VLLM_ARGS", "{}"))
        env["XLSPEC_VLLM_ARGS"] = json.dumps(extra | {"load_format": "dummy"})
    if args.plan:
        project, plan_path = os.path.dirname(os.path.dirname(os.path.abspath(args.plan))), os.path.abspath(args.plan)
        runs = os.path.join(work, "runs")
    else:
        project = os.path.join(work, "project")
        shutil.copytree(os.path.join(ROOT, "specs"), os.path.join(project, "specs"))
        xlspec(["compile", "specs/demo.xls"], project, env)
        plan_path = os.path.join(project, "build", "demo.plan.json")
        runs = os.path.join(project, "runs")
    with open(plan_path, encoding="utf-8") as f:
        experiment = json.load(f)["experiment"]
    run_args = ["run", plan_path, "--engine", args.engine, "--no-report", "--runs-dir", runs]
    if args.limit:
        run_args += ["--limit", str(args.limit)]

    full_wall, out = xlspec(run_args, project, env)
    m = manifest(os.path.dirname(runs), experiment)
    ray_start = m["timings"]["ray_start_s"]
    model = next(iter(m["models"].values()))
    print(out.strip())

    plan, requests = requests_of(plan_path, args.limit)
    if args.bare_vllm:
        load, infer, tokens = bare_vllm(plan, requests, json.loads(env.get("XLSPEC_VLLM_ARGS", "{}")))
        what = "bare vllm.LLM.generate"
    else:
        from xlspec.runtime.engines import ENGINES

        var = ENGINES[args.engine].settings_env if args.engine in ENGINES else None
        load, infer, tokens = hand_loop(plan, requests, args.engine, json.loads(env.get(var) or "{}") if var else {})
        what = f"hand-written loop over the {args.engine} engine"
    bare = load + infer
    print(f"\nrequests: {len(requests):,} unique ({model['computed']:,} computed by xlspec)")
    print(f"xlspec run: {full_wall:.1f} s wall, of which Ray start {ray_start:.1f} s; engine load {model['load_s']:.1f} s, inference {model['infer_s']:.1f} s, {model['output_tokens_per_s']:,.0f} output tok/s")
    print(f"{what}: {bare:.1f} s (load {load:.1f} s, inference {infer:.1f} s, {tokens / infer if infer else 0:,.0f} output tok/s)")
    print(f"ratio xlspec (without Ray start) / hand loop: {(full_wall - ray_start) / bare:.2f}  (target <= 1.15); inference only: {model['infer_s'] / infer:.2f}")

    noop_wall, out = xlspec(run_args, project, env)
    print(f"no-op re-run: {noop_wall:.1f} s  (target < 5 s)  [{out.strip().splitlines()[1].strip()}]")

    if not args.no_incremental and not args.plan:
        spec = os.path.join(project, "specs", "demo.xls")
        with open(spec, encoding="utf-8") as f:
            text = f.read()
        with open(spec, "w", encoding="utf-8") as f:
            f.write(text.replace('en = "Quiz time! {question}', 'en = "Quiz night! {question}'))
        xlspec(["compile", "specs/demo.xls"], project, env)
        inc_wall, out = xlspec(run_args, project, env)
        mi = next(iter(manifest(os.path.dirname(runs), experiment)["models"].values()))
        print(f"incremental re-run (one framing's English text edited): {inc_wall:.1f} s = {inc_wall / full_wall:.0%} of the full run's time; "
              f"{mi['computed']:,} of the plan's {model['requests']:,} requests computed ({mi['computed'] / max(model['requests'], 1):.0%}); "
              f"Ray start {manifest(os.path.dirname(runs), experiment)['timings']['ray_start_s']:.1f} s and engine load {mi['load_s'] or 0:.1f} s of it are fixed costs")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
