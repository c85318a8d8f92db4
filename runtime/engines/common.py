"""What the ``hf`` and ``vllm`` engines share: prompt templating and tokenization, option-label
token variants, the arithmetic of option scores, and running a batch so that one bad request
never fails the others.

Both engines tokenize here with the model's own tokenizer, so they feed the model the same
token ids for the same request and their results are comparable.  Importing this module
does not import torch.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .base import EngineRequest, EngineResult


class RequestError(ValueError):
    """A request that cannot run (prompt too long, unusable option labels); it becomes
    ``EngineResult(error=...)`` without reaching the model."""


@dataclass
class Prepared:
    """A request with its prompt tokenized, ready for the model."""

    index: int
    request: EngineRequest
    prompt_ids: list[int]
    variants: dict[str, list[int]] = field(default_factory=dict)
    """``options``: label -> the token ids that stand for it at the answer position."""
    continuations: list[list[int]] = field(default_factory=list)
    """``loglik`` and ``implicit_reward``: the token ids of each option text (candidate), in
    order, scored after ``prompt_ids``."""
    sequences: list[list[int]] = field(default_factory=list)
    """``reward``: each candidate's whole input to the classifier (prompt and response);
    ``classify``: the one input."""
    text: str | None = None
    """The prompt as the model reads it (after the chat template), recorded with the answer."""


def chat_messages(request: EngineRequest, answer: str | None = None) -> list[dict]:
    """The request as chat messages: its system prompt, the prompt as the user's turn, and
    ``answer`` (a reward model's candidate) as the assistant's."""
    messages = [{"role": "user", "content": request.prompt}]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def prompt_text(tokenizer, request: EngineRequest) -> str:
    """The text the model reads: the prompt through the model's chat template, or as is
    (``chat = false``)."""
    if not request.chat:
        return request.prompt
    if not getattr(tokenizer, "chat_template", None):
        raise RequestError("chat=true but the model's tokenizer has no chat template")
    return tokenizer.apply_chat_template(chat_messages(request), tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, request: EngineRequest) -> list[int]:
    """The prompt's token ids.  Chat prompts go through the model's chat template (which
    writes any BOS itself, so no special tokens are added again); raw prompts get the
    tokenizer's usual special tokens, as a base model expects."""
    return tokenizer.encode(prompt_text(tokenizer, request), add_special_tokens=not request.chat)


@functools.lru_cache(maxsize=256)
def label_variants(tokenizer, labels: tuple[str, ...]) -> dict[str, list[int]]:
    """For each label, the first token of "A" and of " A" (deduplicated).  A first token that
    is only whitespace is skipped: some tokenizers (SmolLM2's, for digits) split " 1" into
    " " + "1", and " " says nothing about the label.  Cached: a study asks the same label
    set thousands of times (callers must not modify the result)."""
    if not labels:
        raise RequestError("an options request needs option labels")
    variants: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for label in labels:
        ids: list[int] = []
        for text in (label, " " + label):
            tokens = tokenizer.encode(text, add_special_tokens=False)
            if tokens and tokenizer.decode(tokens[:1]).strip() and tokens[0] not in ids:
                ids.append(tokens[0])
        if not ids:
            raise RequestError(f"option label {label!r} has no token of its own")
        for token in ids:
            if owner.setdefault(token, label) != label:
                raise RequestError(
                    f"option labels {owner[token]!r} and {label!r} start with the same token; "
                    f"use labels that differ in their first character"
                )
        variants[label] = ids
    return variants


def candidate_ids(tokenizer, request: EngineRequest, candidate: str) -> list[int]:
    """A reward model's input: the prompt as the user turn and the candidate as the
    assistant's answer, through the chat template; without chat, the two as a text pair
    (how cross-encoder reward models read a question and an answer)."""
    if not request.chat:
        return tokenizer(request.prompt, candidate)["input_ids"]
    if not getattr(tokenizer, "chat_template", None):
        raise RequestError("chat=true but the model's tokenizer has no chat template (set chat = false to score prompt and response as a text pair)")
    text = tokenizer.apply_chat_template(chat_messages(request, candidate), tokenize=False, add_generation_prompt=False)
    return tokenizer.encode(text, add_special_tokens=False)


def prepare(tokenizer, request: EngineRequest, index: int, max_len: int) -> Prepared:
    """Tokenize a request and check it fits the model's context (``max_len`` tokens)."""
    if request.kind in ("reward", "classify"):
        return _prepare_classifier(tokenizer, request, index, max_len)
    text = prompt_text(tokenizer, request)
    ids = tokenizer.encode(text, add_special_tokens=not request.chat)
    item = Prepared(index, request, ids, text=text)
    if request.kind == "options":
        item.variants = label_variants(tokenizer, tuple(request.options))
    elif request.kind == "loglik":
        if not request.options:
            raise RequestError("a loglik request needs option texts")
        item.prompt_ids, item.continuations = encode_pair(tokenizer, text, request.options, not request.chat)
        ids = item.prompt_ids
        if not ids:
            raise RequestError("the prompt is empty: a continuation needs a context to follow")
        if not all(item.continuations):
            raise RequestError("an option text is empty")
    elif request.kind == "implicit_reward":
        if not request.options:
            raise RequestError("an implicit_reward request needs candidate responses")
        item.continuations = [
            tokenizer.encode(option, add_special_tokens=False) for option in request.options
        ]
        if not all(item.continuations):
            raise RequestError("a candidate response is empty")
    elif request.kind != "generate":
        raise RequestError(f"unknown answer kind {request.kind!r}")
    elif request.max_tokens < 1:
        raise RequestError(f"max_tokens must be at least 1, got {request.max_tokens}")
    if request.temperature < 0 or not 0 < request.top_p <= 1:
        raise RequestError(
            f"need temperature >= 0 and 0 < top_p <= 1, got {request.temperature}, {request.top_p}"
        )
    longest = len(ids) + max((len(c) for c in item.continuations), default=0)
    if longest + 1 > max_len:
        raise RequestError(
            f"prompt is {longest} tokens after templating; the model's max length is {max_len}"
        )
    return item


def encode_pair(tokenizer, context: str, continuations, add_special_tokens: bool) -> tuple[list[int], list[list[int]]]:
    """The context's token ids and each continuation's, as lm-evaluation-harness splits them:
    whitespace that ends the context moves to the start of the continuation, and a
    continuation's ids are those of context + continuation after the context's own ids, so
    a token that spans the boundary is tokenized as in running text.  The model reads the
    context's ids followed by the continuation's."""
    stripped = context.rstrip()
    moved = context[len(stripped):]
    context_ids = tokenizer.encode(stripped, add_special_tokens=add_special_tokens)
    out = []
    for continuation in continuations:
        whole = tokenizer.encode(stripped + moved + continuation, add_special_tokens=add_special_tokens)
        out.append(whole[len(context_ids):])
    return context_ids, out


def _prepare_classifier(tokenizer, request: EngineRequest, index: int, max_len: int) -> Prepared:
    if request.kind == "reward":
        if not request.options:
            raise RequestError("a reward request needs a candidate response")
        sequences = [candidate_ids(tokenizer, request, c) for c in request.options]
    else:
        if not request.options:
            raise RequestError("a classify request needs option texts (the labels)")
        sequences = [tokenizer.encode(request.prompt, add_special_tokens=True)]
    longest = max(len(s) for s in sequences)
    if longest > max_len:
        raise RequestError(f"input is {longest} tokens after templating; the model's max length is {max_len}")
    return Prepared(index, request, sequences[0], sequences=sequences)


def classifier_labels(config, options: Sequence[str]) -> list[int]:
    """The head's output index of each option text, matched to the model's ``id2label``
    without case."""
    by_name: dict[str, int] = {}
    for i, name in (getattr(config, "id2label", None) or {}).items():
        by_name.setdefault(str(name).strip().lower(), int(i))
    missing = [o for o in options if o.strip().lower() not in by_name]
    if missing:
        labels = ", ".join(str(config.id2label[i]) for i in sorted(config.id2label, key=int))
        raise RequestError(f"option {missing[0]!r} is not a label of the classifier (its labels: {labels})")
    return [by_name[o.strip().lower()] for o in options]


def check_reward_head(num_labels: int, model: str) -> None:
    if num_labels != 1:
        raise RequestError(f"a reward model has one output; model `{model}` has {num_labels} labels (use answer = classify)")


def reward_results(group: list[Prepared], outputs: Sequence[Sequence[float]]) -> list[EngineResult]:
    """``reward``: each candidate's reward is the head's one output for its sequence
    (``outputs``: one row per sequence of the group's items, in order)."""
    rows = iter(outputs)
    return [
        EngineResult(
            request_id=item.request.request_id,
            scores=dict(zip("ab", (float(next(rows)[0]) for _ in item.sequences))),
            prompt_tokens=sum(len(seq) for seq in item.sequences),
            finish_reason="reward",
        )
        for item in group
    ]


def classify_result(item: Prepared, logits: Sequence[float], config) -> EngineResult:
    """``classify``: the head's log-softmax at the options' labels, renormalised over them."""
    norm = logsumexp([float(x) for x in logits])
    options = item.request.options
    result = options_result(item, {o: float(logits[i]) - norm for o, i in zip(options, classifier_labels(config, options))})
    result.finish_reason = "classify"
    return result


def classify_group(group: list[Prepared], config, head: Callable[[list[list[int]]], Sequence[Sequence[float]]]) -> list[EngineResult]:
    """``classify`` for a group: each item's options are matched to the head's labels first,
    so one whose options are not labels fails alone, before any forward pass; ``head`` runs
    the rest (their inputs -> the head's raw outputs)."""
    results: dict[int, EngineResult] = {}
    ready = []
    for i, item in enumerate(group):
        try:
            classifier_labels(config, item.request.options)
            ready.append(i)
        except RequestError as exc:
            results[i] = error_result(item.request, exc)
    if ready:
        for i, logits in zip(ready, head([group[i].sequences[0] for i in ready])):
            results[i] = classify_result(group[i], logits, config)
    return [results[i] for i in range(len(group))]


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def softmax(scores: dict[str, float]) -> dict[str, float]:
    norm = logsumexp(list(scores.values()))
    return {k: math.exp(v - norm) for k, v in scores.items()}


def options_result(item: Prepared, label_logprobs: dict[str, float]) -> EngineResult:
    """``label_logprobs``: raw log-probability of each label (its variants summed in
    probability space); the probabilities are renormalised over the labels."""
    probs = softmax(label_logprobs)
    return EngineResult(
        request_id=item.request.request_id,
        response=max(probs, key=probs.__getitem__),
        option_logprobs=label_logprobs,
        option_probs=probs,
        prompt_tokens=len(item.prompt_ids),
        output_tokens=0,
        finish_reason="options",
    )


def loglik_result(item: Prepared, sums: list[float]) -> EngineResult:
    """``sums``: per option, the summed log-probability of its tokens."""
    return loglik_scores(item.request.request_id, list(item.request.options), sums, [len(c) for c in item.continuations], len(item.prompt_ids))


def loglik_scores(request_id: str, options: list[str], sums: list[float], lengths: list[int], prompt_tokens: int) -> EngineResult:
    """A ``loglik`` answer: each continuation's summed log-probability and its number of
    tokens.  Which option it chooses is the answer's normalisation's to say
    (:mod:`xlspec.answers.loglik`), so one answer serves every normalisation."""
    return EngineResult(
        request_id=request_id,
        option_logprobs=dict(zip(options, sums)),
        option_tokens={o: float(n) for o, n in zip(options, lengths)},
        prompt_tokens=prompt_tokens,
        output_tokens=0,
        finish_reason="loglik",
    )


def error_result(request: EngineRequest, exc: BaseException) -> EngineResult:
    message = str(exc) if isinstance(exc, RequestError) else f"{type(exc).__name__}: {exc}"
    return EngineResult(request_id=request.request_id, error=message)


def run_batch(
    batch: list[EngineRequest],
    prepare_one: Callable[[EngineRequest, int], Prepared],
    groups: Callable[[list[Prepared]], list[list[Prepared]]],
    run_group: Callable[[list[Prepared]], list[EngineResult]],
    deliver: Callable[[list[EngineResult]], None] | None = None,
) -> list[EngineResult]:
    """The engines' common ``run``: tokenize and check every request (failures become error
    results), split the rest into groups the model runs in one go, and run each group,
    timing it.  If a group's model call fails, its halves are retried, down to single
    requests, so only the request that fails alone carries the error (a group of n with one
    bad request costs about 2·log2(n) extra calls, not n).  Results come back in request
    order; ``deliver`` (where given) also gets each group's results as it finishes, and
    the requests that failed before reaching the model first."""
    results: list[EngineResult | None] = [None] * len(batch)
    ready: list[Prepared] = []
    for i, request in enumerate(batch):
        try:
            ready.append(prepare_one(request, i))
        except Exception as exc:  # noqa: BLE001 - any failure belongs to this request only
            results[i] = error_result(request, exc)
    if deliver is not None:
        failed = [r for r in results if r is not None]
        if failed:
            deliver(failed)
    for group in groups(ready):
        out = _run_timed(group, run_group)
        for item, result in zip(group, out):
            if result.engine_prompt is None:
                result.engine_prompt = item.text
            results[item.index] = result
        if deliver is not None:
            deliver(out)
    return results  # type: ignore[return-value]


def _run_timed(group: list[Prepared], run_group) -> list[EngineResult]:
    start = time.perf_counter()
    try:
        out = run_group(group)
    except Exception as exc:  # noqa: BLE001
        if len(group) == 1:
            return [error_result(group[0].request, exc)]
        half = len(group) // 2
        return _run_timed(group[:half], run_group) + _run_timed(group[half:], run_group)
    share = (time.perf_counter() - start) * 1000 / len(group)
    for result in out:
        result.latency_ms = share
    return out


def dispatch(engine, group: list[Prepared]) -> list[EngineResult]:
    """Run a group of one answer kind with the engine's ``_<kind>`` method."""
    kind = group[0].request.kind
    method = getattr(engine, f"_{kind}", None)
    if method is None:
        raise RequestError(f"the {engine.name} engine cannot answer `{kind}` requests")
    return method(group)


def by_kind(items: list[Prepared], max_group: int | None = None, max_tokens: int | None = None, size: Callable[[Prepared], tuple[int, int]] | None = None) -> list[list[Prepared]]:
    """Group requests by answer kind, shortest first (less padding), in groups of at most
    ``max_group`` model rows and, where ``size`` gives each request's (rows, tokens per
    row), at most ``max_tokens`` padded tokens (rows x the widest row).  Without ``size`` a
    loglik request counts one row per option."""
    groups: list[list[Prepared]] = []

    def rows_width(item: Prepared) -> tuple[int, int]:
        if size is not None:
            return size(item)
        return max(1, len(item.continuations), len(item.sequences)), len(item.prompt_ids)

    for kind in sorted({i.request.kind for i in items}):
        same = sorted((i for i in items if i.request.kind == kind), key=lambda i: rows_width(i)[1])
        group: list[Prepared] = []
        rows = width = 0
        for item in same:
            n, w = rows_width(item)
            over_rows = max_group is not None and rows + n > max_group
            over_tokens = max_tokens is not None and (rows + n) * max(width, w) > max_tokens
            if group and (over_rows or over_tokens):
                groups.append(group)
                group, rows, width = [], 0, 0
            group.append(item)
            rows += n
            width = max(width, w)
        if group:
            groups.append(group)
    return groups


def cpu_prefers_float32() -> bool:
    """True on CPUs without native bfloat16 math (AVX2-only x86), where bfloat16 runs an
    order of magnitude slower than float32 (measured: SmolLM2-135M, 14x in transformers)."""
    import torch

    return not torch.ops.mkldnn._is_mkldnn_bf16_supported()


def checkpoint_dtype(path) -> str | None:
    """The dtype a checkpoint's ``config.json`` records (``dtype``, or ``torch_dtype`` in
    older files), or None where it records none."""
    import os

    try:
        with open(os.path.join(str(path), "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    found = config.get("dtype") or config.get("torch_dtype")
    return str(found).removeprefix("torch.") if found else None


def cpu_auto_dtype(path) -> str:
    """What ``dtype = auto`` runs in on a CPU, for every engine alike: the checkpoint's own
    dtype (float32 where it records none), except bfloat16 on CPUs without bfloat16 math,
    which runs in float32.  (vLLM's own ``auto`` turns a float32 checkpoint into bfloat16 on
    every x86 CPU: its answers then differ from the hf engine's by up to 0.1 in a
    log-probability, and from one run to the next with the batch.)"""
    saved = checkpoint_dtype(path) or "float32"
    if saved == "bfloat16" and cpu_prefers_float32():
        return "float32"
    return saved
