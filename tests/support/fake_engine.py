"""A deterministic stand-in engine for scheduler and store tests (test support only: it is not
shipped with xlspec).

Answers derive from a sha256 of the system prompt and prompt, so every run and every machine
gives the same results; a pairwise judge's prompt (one that asks for "[[A]] or [[B]]") is
always answered "[[A]]", a judge with full position bias.  The ``fail_marker`` setting (``EngineConfig.settings``) makes every
request whose prompt contains the marker come back with an error, as an engine's failed
request would.

Importing this module registers ``EngineInfo(name="fake")`` in ``ENGINES`` (once: importing
it again, even under another module name, keeps the first registration).

How the engine reaches Ray workers
----------------------------------
The scheduler hands the ``EngineInfo`` itself to its ``EngineActor`` (``info.load(config)``
builds the engine in the actor process), so the actor must unpickle ``info.load`` and
:class:`FakeEngine`.  Ray pickles with its vendored cloudpickle, which pickles functions and
classes of an importable module *by reference* (module name + qualified name).  This module
is imported as ``support.fake_engine`` because pytest puts ``tests/`` on the driver's
``sys.path``; a Ray worker only gets the driver's working directory added to its path, so by
reference the worker fails with ``ModuleNotFoundError: No module named 'support'`` (tried:
the engine actor's load fails and the model's cells stay unwritten).  Two fixes work:

* ``PYTHONPATH=<repo>/tests`` set before Ray starts (a local cluster inherits the driver's
  environment; ``os.environ`` changed in-process before ``ray.init`` counts too), which does
  not help with a cluster started elsewhere (``--address``);
* registering the module for pickling by value with
  ``ray.cloudpickle.register_pickle_by_value``, so the actor receives the code itself and
  needs nothing on its path beyond ``xlspec``.

This module does the second at import time (:func:`_pickle_by_value`), so any test that
imports it can run the fake engine through any Ray cluster, whatever the working directory
or environment.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys

from xlspec.runtime.engines.base import ENGINES, EngineConfig, EngineInfo, EngineRequest, EngineResult

ANSWERS = frozenset({"generate", "options", "loglik"})


class FakeEngine:
    name = "fake"

    def __init__(self, config: EngineConfig | None = None, fail_marker: str | None = None):
        self.config = config
        settings = config.settings if config is not None else {}
        self.fail_marker = fail_marker if fail_marker is not None else settings.get("fail_marker")

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        return [self._answer(r) for r in batch]

    def close(self) -> None:
        pass

    def _answer(self, r: EngineRequest) -> EngineResult:
        result = EngineResult(request_id=r.request_id, prompt_tokens=len(r.prompt.split()))
        if self.fail_marker and self.fail_marker in r.prompt:
            result.error = "fake failure (fail_marker in prompt)"
            return result
        digest = hashlib.sha256(f"{r.system}\x00{r.prompt}".encode()).digest()
        if r.kind == "generate":
            pick = r.options[digest[0] % len(r.options)] if r.options else digest.hex()[:12]
            # A pairwise judge's prompt ("... [[A]] or [[B]] ..."): always the first shown.
            result.response = "[[A]]" if "[[A]] or [[B]]" in r.prompt else f"Answer: {pick}"
            result.output_tokens = 2
            result.finish_reason = "stop"
            return result
        if not r.options:
            result.error = f"a {r.kind} request needs options"
            return result
        weights = {o: 1 + digest[i % len(digest)] for i, o in enumerate(r.options)}
        total = sum(weights.values())
        result.option_probs = {o: w / total for o, w in weights.items()}
        # "raw" values leave 10% of the probability to the rest of the vocabulary
        result.option_logprobs = {o: math.log(0.9 * p) for o, p in result.option_probs.items()}
        result.finish_reason = r.kind
        if r.kind == "loglik":  # the sums and token counts; the answer's normalisation chooses
            result.option_probs = None
            result.option_tokens = {o: float(len(o.split()) or 1) for o in r.options}
            return result
        result.response = max(weights, key=weights.__getitem__)
        return result


def load(config: EngineConfig, fail_marker: str | None = None) -> FakeEngine:
    return FakeEngine(config, fail_marker=fail_marker)


def _register(name: str, summary: str, loader, computes_as: str | None = None) -> EngineInfo:
    existing = ENGINES.get(name)
    if existing is not None:
        return existing
    return EngineInfo(name=name, summary=summary, load=loader, answers=ANSWERS, chunk=256, computes_as=computes_as).register()


FAKE = _register("fake", "deterministic test engine: answers from a sha256 of the prompt", load)


def failing(marker: str) -> str:
    """An engine name whose engine fails every request with ``marker`` in its prompt (as
    the ``fail_marker`` setting does), registered on first use.  For runs through the
    scheduler, whose ``EngineConfig.settings`` come from the machine (``XLSPEC_VLLM_ARGS``),
    not from the test: run the plan with ``engine_override=failing("BOOM")``, then with
    ``engine_override="fake"``.  It computes as ``fake`` (``EngineInfo.computes_as``), so both
    runs have the same request ids and share their answers."""
    name = f"fake-fail-{marker}"
    _register(name, f"the fake engine, failing prompts that contain {marker!r}", functools.partial(load, fail_marker=marker), computes_as="fake")
    return name


def _load_unless(path: str, config: EngineConfig) -> FakeEngine:
    import os

    if os.path.exists(path):
        raise RuntimeError(f"cannot load while {path} exists")
    return FakeEngine(config)


def load_fails_while(path: str) -> str:
    """An engine whose load fails while the file ``path`` exists (a model that cannot load
    until something is fixed), registered on first use; it computes as ``fake``."""
    name = "fake-loadfail-" + hashlib.sha256(path.encode()).hexdigest()[:8]
    _register(name, f"the fake engine, failing to load while {path} exists", functools.partial(_load_unless, path), computes_as="fake")
    return name


def twin() -> str:
    """An engine that answers as ``fake`` does but is another engine (its answers are its
    own), registered on first use."""
    _register("fake-twin", "another engine with the fake engine's answers", load)
    return "fake-twin"


def _pickle_by_value() -> None:
    try:
        from ray import cloudpickle
    except ImportError:  # without Ray, nothing needs to pickle the engine
        return
    module = sys.modules.get(__name__)
    if module is not None:  # None where loaded without being imported (a test does that)
        cloudpickle.register_pickle_by_value(module)


_pickle_by_value()
