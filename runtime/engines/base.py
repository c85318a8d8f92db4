"""The contract between the scheduler and an inference engine, and the engine registry.

Every engine takes a batch of :class:`EngineRequest` and returns one :class:`EngineResult`
per request, in order.  The same request gives the same kind of result whichever engine ran
it, so metrics never care.  An engine is one module of this package that registers an
:class:`EngineInfo` in :data:`ENGINES`; the checker reads the registry for the engines a
spec can name (``hf("...")``), the scheduler for how to build and feed them.  Engine modules
import torch, transformers or vLLM only when an engine is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from xlspec.lower import EngineRequest
from xlspec.registry import Registry
from xlspec.spec import ModelSpec

ENGINES: Registry["EngineInfo"] = Registry("engine", "xlspec.runtime.engines")


@dataclass
class EngineResult:
    request_id: str
    response: str | None = None
    option_logprobs: dict[str, float] | None = None
    """``options``: raw log-probability of each label at the answer position (label token
    variants such as "A" and " A" summed in probability space).  ``loglik``: the sum of the
    option text's token log-probabilities."""
    option_probs: dict[str, float] | None = None
    """``options`` and ``classify``: probabilities renormalised over the options (they sum to
    1).  ``loglik`` leaves them to the answer's normalisation (the results row has them)."""
    option_tokens: dict[str, float] | None = None
    """``loglik``: each continuation's number of tokens."""
    scores: dict[str, float] | None = None
    """``reward``: each candidate's reward (``a``, ``b``).  ``implicit_reward``: each
    candidate's summed log-probability under the policy (``a``, ``b``) and the reference
    model (``a@reference``, ``b@reference``)."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    latency_ms: float = 0.0
    error: str | None = None
    retries: int = 0
    """Requests sent again after a transient failure (API engines)."""
    engine_prompt: str | None = None
    """The exact text the engine was given: the prompt after the chat template (local
    engines), or the chat messages as JSON (API engines, whose servers template them)."""


class Engine(Protocol):
    """``progress`` is optional: an engine that has it (None until the scheduler sets it)
    calls ``progress(n)`` as ``n`` more requests of the current ``run`` are done, and the
    progress bar moves within an engine call."""

    name: str

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    """What an engine is built from: the model as the plan records it (``source`` resolved
    to a path where it is a local folder) and this machine's extra settings for the engine
    (``XLSPEC_VLLM_ARGS``, ``XLSPEC_HF_ARGS``), which tune it without changing its answers."""

    name: str
    model: ModelSpec
    settings: dict = field(default_factory=dict)
    references: dict[str, ModelSpec] = field(default_factory=dict)
    """Other models the engine runs for some answers (``implicit_reward``'s reference), by
    the plan's name, resolved like ``model``."""
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    """Environment variables an API engine needs (its key), read by the driver and handed
    to the engine's actor (whose environment may be another machine's); never printed."""


@dataclass(frozen=True)
class EngineInfo:
    name: str
    summary: str
    load: Callable[[EngineConfig], Engine]
    """Builds the engine (inside its Ray actor)."""
    answers: frozenset[str]
    """The answer kinds it serves."""
    chunk: int = 256
    """Requests per batch: the scheduler's unit of work, and of answer files (a batch's
    answers are sealed into one file of the store).  ``XLSPEC_CHUNK`` overrides it."""
    part: Callable[[ModelSpec], int] | None = None
    """Requests per engine call, where smaller than a batch: the actor gets a batch in calls
    of this many requests, and each call's answers are journaled as soon as it returns, so a
    kill loses at most the calls in flight and progress moves call by call.  None: one call
    per batch (an engine that schedules the whole batch itself, as vLLM does, or one that
    hands over its answers within a call, as the ``hf`` engine does forward pass by forward
    pass through its ``deliver`` hook).  ``XLSPEC_PART`` overrides it."""

    pinned_by: Callable[[ModelSpec], str | None] | None = None
    """What pins a model's answers beside its source (the results' ``model_revision``);
    default: the model's ``revision``.  For a server, its URL."""
    key_env: Callable[[ModelSpec], str | None] | None = None
    """The environment variable a model's key is read from (API engines), or None."""
    local: bool = True
    """It runs the model's weights here (GPUs, CPU threads); False for a client of a server."""
    computes_as: str | None = None
    """The engine whose answers this one computes, where it is a variant of it (a test
    double that injects faults): a run on it keeps that engine's identity, so its answers
    are that engine's."""
    settings_env: str | None = None
    """The environment variable holding this machine's settings for the engine (a JSON
    object, ``EngineConfig.settings``), such as ``XLSPEC_VLLM_ARGS``; None: no settings."""
    settings_example: str = "{}"
    """A value of ``settings_env``, for the error where it is not a JSON object."""
    check_settings: Callable[[dict], str | None] | None = None
    """What is wrong with the settings read from ``settings_env`` (the driver says it before
    any model loads), or None; without it the engine checks them itself."""
    refuses: Callable[[ModelSpec, str], tuple[str, str] | None] | None = None
    """For a model and a request kind the engine serves in general: why this model cannot
    (reason, hint), or None.  (The openai engine serves ``loglik`` only through plain
    completions, not with ``chat = true``.)"""

    def register(self) -> "EngineInfo":
        return ENGINES.register(self.name, self)
