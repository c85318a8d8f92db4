"""The contract between the scheduler and an inference engine.

Every engine (``hf``, ``vllm``, and the fake one used by scheduler unit tests) takes a batch
of :class:`EngineRequest` and returns one :class:`EngineResult` per request, in order.  The
same request gives the same kind of result whichever engine ran it, so metrics never care.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

AnswerKind = Literal["generate", "options", "loglik"]


@dataclass(frozen=True)
class EngineRequest:
    request_id: str
    prompt: str
    """The rendered prompt text.  Engines apply the model's chat template unless ``chat`` is
    false (base models get this text as is)."""
    kind: AnswerKind
    options: tuple[str, ...] = ()
    """``options``: the option labels ("1".."4", "A".."D"); the engine reads each label's
    probability at the answer position.  ``loglik``: the option texts, scored as
    continuations of the prompt."""
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    chat: bool = True
    system: str | None = None


@dataclass
class EngineResult:
    request_id: str
    response: str | None = None
    option_logprobs: dict[str, float] | None = None
    """``options``: raw log-probability of each label at the answer position (label token
    variants such as "A" and " A" summed in probability space).  ``loglik``: the sum of the
    option text's token log-probabilities."""
    option_probs: dict[str, float] | None = None
    """Probabilities renormalised over the options (they sum to 1).  For ``loglik`` this is
    the softmax over length-normalised log-likelihoods (mean per token)."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    latency_ms: float = 0.0
    error: str | None = None


class Engine(Protocol):
    name: str

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ModelConfig:
    """What the plan says about a model; engines are built from this alone."""

    name: str
    engine: Literal["hf", "vllm", "fake"]
    source: str
    revision: str | None = None
    chat: bool = True
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel: int = 1
    batch_size: int = 64
    settings: dict = field(default_factory=dict)
