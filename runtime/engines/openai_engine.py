"""The openai engine: a model behind an OpenAI-compatible HTTP API (a hosted API, ``vllm
serve``, SGLang, TGI, Ollama).

``model gpt = openai("gpt-4o-mini") { base_url = "http://localhost:8000/v1" }``: the source
is the server's model name.  ``chat = true`` (the default) sends ``/chat/completions``
(the server applies its chat template); ``chat = false`` sends the prompt as is to
``/completions``, as a base model reads it.

Answer kinds:

- ``generate``: the first choice's text.
- ``options``: one token with the ``top_logprobs`` most probable tokens (the model setting:
  20 by default, the most OpenAI's chat endpoint allows; its ``/completions`` allows 5); a label's
  log-probability is the sum, in probability space, of the top tokens that are the label
  once stripped ("A", " A"), as the local engines sum a label's token variants.  A label
  that is not among the top tokens gets probability 0, and the row's ``finish_reason``
  names it; when no label is there the request fails.
- ``loglik`` (``chat = false`` only): the completions endpoint with ``echo`` and
  ``logprobs`` returns the log-probability of each prompt token; an option's score is the
  sum over the tokens of prompt + option that start at or after the option's first
  character.  Chat endpoints return no log-probabilities of given text, so a chat model
  with ``loglik`` is a compile error.

The API key is read from the environment variable the spec names (``api_key_env``) when the
engine is built, kept in the engine's HTTP headers and nowhere else: no plan, row, manifest,
log line or error message holds it (an error body that quotes it is scrubbed).

Requests run ``concurrency`` at a time.  A 408, 409, 429, any 5xx, a timeout or a dropped
connection is retried up to ``max_retries`` times, after ``Retry-After`` where the server
sends one and otherwise an exponential backoff with jitter; another status, or a retryable
one past the last retry, becomes the request's error (an error row, sent again by the next
run).  Each answer records how many retries it took (``retries``).
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import json
import math
import os
import random
import time
from dataclasses import dataclass

from xlspec.spec import ModelSpec

from . import common
from .base import EngineConfig, EngineInfo, EngineRequest, EngineResult

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 300.0
RETRY_STATUS = frozenset({408, 409, 429})
"""Statuses retried besides 5xx."""


def base_url(model: ModelSpec) -> str:
    return (model.base_url or DEFAULT_BASE_URL).rstrip("/")


def key_env(model: ModelSpec) -> str | None:
    """The variable the key is read from: the spec's, OPENAI_API_KEY for OpenAI's own API,
    and none for another server unless the spec names one."""
    return model.api_key_env or (DEFAULT_KEY_ENV if model.base_url is None else None)


def missing_key(model: ModelSpec) -> str | None:
    """The variable a model needs that is not set in this environment (None when fine)."""
    var = key_env(model)
    return var if var and not os.environ.get(var) else None


_CLOCK: contextvars.ContextVar[list[float]] = contextvars.ContextVar("xlspec_api_clock", default=[0.0])
"""The running request's time in HTTP calls (each request's task has its own; the calls of a
``loglik`` request, run as tasks of that task, add to the same one)."""


class RequestFailed(Exception):
    def __init__(self, message: str, retries: int):
        super().__init__(message)
        self.retries = retries


@dataclass
class _Failure:
    message: str
    retryable: bool
    retry_after: float | None = None


class OpenAIEngine:
    name = "openai"

    def __init__(self, config: EngineConfig):
        import httpx  # noqa: F401 - fail at build time, naming the missing library

        self.config = config
        self.model = config.model
        self.progress = None  # set by the scheduler: called with n as n more requests are done
        self.base_url = base_url(self.model)
        var = key_env(self.model)
        self._key = (config.secrets.get(var) or os.environ.get(var)) if var else None
        if var and not self._key:
            raise RuntimeError(f"model `{config.name}` reads its API key from the environment variable {var}, which is not set")
        self._sem: asyncio.Semaphore | None = None

    # ---- the engine contract -------------------------------------------------------------

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        return asyncio.run(self._run(batch))

    def close(self) -> None:
        pass

    async def _run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        import httpx

        n = max(1, self.model.concurrency)
        self._sem = asyncio.Semaphore(n)
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=float(self.model.timeout), limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, r) for r in batch)))

    async def _one(self, client, request: EngineRequest) -> EngineResult:
        clock = [0.0]  # seconds this request's HTTP calls took (not waiting for a slot or a retry)
        _CLOCK.set(clock)
        try:
            method = getattr(self, f"_{request.kind}", None)
            if method is None:
                raise common.RequestError(f"the openai engine cannot answer `{request.kind}` requests")
            result = await method(client, request)
        except RequestFailed as e:
            result = EngineResult(request.request_id, error=self._scrub(str(e)), retries=e.retries)
        except common.RequestError as e:
            result = EngineResult(request.request_id, error=self._scrub(str(e)))
        except Exception as e:  # noqa: BLE001 - an unexpected answer shape belongs to this request only
            result = EngineResult(request.request_id, error=self._scrub(f"{type(e).__name__}: {e}"))
        result.latency_ms = clock[0] * 1000
        if self.progress is not None:
            self.progress(1)
        return result

    # ---- answer kinds --------------------------------------------------------------------

    def _body(self, request: EngineRequest, **extra) -> tuple[str, dict, str]:
        """The endpoint, the request body, and the text sent (what a row shows as the
        engine's input: the prompt, or the chat messages as JSON)."""
        body = {"model": self.model.source, **extra}
        if request.chat:
            messages = common.chat_messages(request)
            body["messages"] = messages
            return "/chat/completions", body, json.dumps(messages, ensure_ascii=False)
        body["prompt"] = request.prompt
        return "/completions", body, request.prompt

    async def _generate(self, client, request: EngineRequest) -> EngineResult:
        if request.max_tokens < 1:
            raise common.RequestError(f"max_tokens must be at least 1, got {request.max_tokens}")
        path, body, sent = self._body(request, max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p, seed=request.seed)
        data, retries = await self._post(client, path, body)
        choice = _first_choice(data)
        text = (choice.get("message") or {}).get("content") if request.chat else choice.get("text")
        usage = data.get("usage") or {}
        return EngineResult(
            request.request_id,
            response=text or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            retries=retries,
            engine_prompt=sent,
        )

    async def _options(self, client, request: EngineRequest) -> EngineResult:
        labels = list(request.options)
        if not labels:
            raise common.RequestError("an options request needs option labels")
        if request.chat:
            path, body, sent = self._body(request, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self.model.top_logprobs, seed=request.seed)
        else:
            path, body, sent = self._body(request, max_tokens=1, temperature=0.0, logprobs=self.model.top_logprobs, seed=request.seed)
        data, retries = await self._post(client, path, body)
        top = _top_tokens(_first_choice(data), request.chat)
        found: dict[str, float] = {}
        for label in labels:
            values = [lp for token, lp in top if token.strip() == label and lp is not None and math.isfinite(lp)]
            if values:
                found[label] = common.logsumexp(values)
        if not found:
            raise common.RequestError(f"none of the option labels {', '.join(labels)} is among the endpoint's top {len(top)} tokens at the answer position")
        probs = common.softmax(found)
        missing = [label for label in labels if label not in found]
        usage = data.get("usage") or {}
        return EngineResult(
            request.request_id,
            response=max(probs, key=probs.__getitem__),
            option_logprobs=found,
            option_probs={label: probs.get(label, 0.0) for label in labels},
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            finish_reason="options" + (f"; not in the top {len(top)} tokens: {', '.join(missing)}" if missing else ""),
            retries=retries,
            engine_prompt=sent,
        )

    async def _loglik(self, client, request: EngineRequest) -> EngineResult:
        if request.chat:
            raise common.RequestError("loglik needs the completions endpoint (chat = false)")
        if not request.options or not all(request.options):
            raise common.RequestError("a loglik request needs option texts" if not request.options else "an option text is empty")
        scored = await asyncio.gather(*(self._continuation(client, request, option) for option in request.options))
        sums = [s for s, _, _, _ in scored]
        lengths = [n for _, n, _, _ in scored]
        result = common.loglik_scores(request.request_id, list(request.options), sums, lengths, min(p for _, _, p, _ in scored))
        result.retries = sum(r for _, _, _, r in scored)
        result.engine_prompt = request.prompt
        return result

    async def _continuation(self, client, request: EngineRequest, option: str) -> tuple[float, int, int, int]:
        """(summed log-probability of the option's tokens, their number, the prompt's tokens,
        retries) from one echoed completion of prompt + option."""
        body = {"model": self.model.source, "prompt": request.prompt + option, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}
        data, retries = await self._post(client, "/completions", body)
        logprobs = _first_choice(data).get("logprobs") or {}
        tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
        if not tokens or values is None:
            raise common.RequestError("the completions endpoint returned no echoed log-probabilities (it needs echo with logprobs, as vllm serve has)")
        # echo returns the prompt's tokens, then the one generated token: drop that.
        prompt_tokens = int((data.get("usage") or {}).get("prompt_tokens") or len(tokens) - 1)
        echoed = tokens[:prompt_tokens]
        text = "".join(t or "" for t in echoed)
        if text.endswith(option):
            # The option starts len(option) characters before the end of the echoed text
            # (which may begin with a BOS token's text, so the prompt's length is no guide).
            start = len(text) - len(option)
            starts = [sum(len(t or "") for t in echoed[:i]) for i in range(len(echoed))]
        else:
            # Token texts that do not spell the text (a character split across tokens is
            # shown as its bytes): the server's offsets, from the prompt's length.
            start = len(request.prompt)
            starts = (logprobs.get("text_offset") or [None] * len(echoed))[:prompt_tokens]
        picked = [v for v, at in zip(values[:prompt_tokens], starts) if at is not None and at >= start]
        if not picked or any(v is None for v in picked):
            raise common.RequestError("the option's tokens have no log-probabilities in the echoed prompt (its first token joins the prompt's last character: end the prompt or begin the option with a space)")
        return float(sum(picked)), len(picked), prompt_tokens - len(picked), retries

    # ---- HTTP with retries ---------------------------------------------------------------

    async def _post(self, client, path: str, body: dict) -> tuple[dict, int]:
        """POST with retries; (the answer's JSON, retries taken), or :class:`RequestFailed`."""
        import httpx

        retries = 0
        while True:
            assert self._sem is not None
            async with self._sem:
                started = time.perf_counter()
                try:
                    response = await asyncio.wait_for(client.post(path, json=body), self.model.timeout)
                    failure = None
                    if response.status_code == 200:
                        try:
                            data = response.json()
                        except ValueError:
                            failure = _Failure("the server's answer is not JSON", True)
                        else:
                            if isinstance(data, dict):
                                return data, retries
                            failure = _Failure("the server's answer is not a JSON object", True)
                    else:
                        status = response.status_code
                        failure = _Failure(
                            f"HTTP {status} from {self.base_url}{path}: {_error_text(response, self._scrub)}",
                            status in RETRY_STATUS or status >= 500,
                            _retry_after(response.headers.get("retry-after")),
                        )
                except httpx.LocalProtocolError as e:  # the request itself cannot be sent
                    raise RequestFailed(f"the request to {self.base_url}{path} cannot be sent ({type(e).__name__})", retries) from None
                except (httpx.TimeoutException, asyncio.TimeoutError):
                    failure = _Failure(f"no answer from {self.base_url}{path} within {self.model.timeout} s", True)
                except httpx.TransportError as e:
                    failure = _Failure(f"connection to {self.base_url}{path} failed ({type(e).__name__}: {e or 'dropped'})", True)
                finally:
                    _CLOCK.get()[0] += time.perf_counter() - started
            if not failure.retryable or retries >= self.model.max_retries:
                tail = f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
                raise RequestFailed(failure.message + tail, retries)
            retries += 1
            await asyncio.sleep(_delay(retries, failure.retry_after))

    def _scrub(self, text: str) -> str:
        """The text without the key, in any spelling an error could give it (as is, escaped,
        or a long enough piece of it)."""
        if not self._key:
            return text
        for form in {self._key, repr(self._key)[1:-1], self._key.encode().hex()}:
            text = text.replace(form, "[API key]")
        if len(self._key) >= 16:  # a piece of it, where a server shortened what it quoted
            for piece in (self._key[:12], self._key[-12:]):
                text = text.replace(piece, "[API key]")
        return text


def _delay(retry: int, retry_after: float | None) -> float:
    """Seconds before retry number ``retry`` (1-based): the server's ``Retry-After`` where it
    sent one, else exponential backoff with full jitter in [base·2^(n-1)/2, base·2^(n-1)]."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_CAP_S)
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (retry - 1))
    return random.uniform(ceiling / 2, ceiling)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(response, scrub) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}``), with the key
    scrubbed, then shortened (shortening first could cut the key and hide it from the
    scrub)."""
    try:
        data = response.json()
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("error") or data.get("message") or data.get("detail")
    except (ValueError, AttributeError):
        message = None
    text = scrub(str(message if message else response.text or response.reason_phrase).strip())
    return text[:300] + ("..." if len(text) > 300 else "")


def _first_choice(data: dict) -> dict:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise common.RequestError("the server's answer has no choices")
    return choices[0]


def _top_tokens(choice: dict, chat: bool) -> list[tuple[str, float | None]]:
    """The top tokens and their log-probabilities at the first answer position."""
    logprobs = choice.get("logprobs") or {}
    if chat:
        content = logprobs.get("content") or []
        if not content:
            raise common.RequestError("the endpoint returned no logprobs (it may not support top_logprobs)")
        return [(t.get("token", ""), t.get("logprob")) for t in content[0].get("top_logprobs") or []]
    tops = logprobs.get("top_logprobs") or []
    if not tops or not isinstance(tops[0], dict):
        raise common.RequestError("the endpoint returned no logprobs (it may not support logprobs on completions)")
    return list(tops[0].items())


def _refuses(model: ModelSpec, kind: str) -> tuple[str, str] | None:
    if kind == "loglik" and model.chat:
        return (
            "the openai engine scores given text only through the completions endpoint, and this model has chat = true (chat endpoints return no log-probabilities of given text)",
            "set `chat = false` to use /completions with echo and logprobs (vllm serve has them; most hosted chat models do not), or use answer = options",
        )
    return None


EngineInfo(
    name="openai",
    summary="an OpenAI-compatible HTTP API (hosted APIs, vllm serve, SGLang): chat or plain completions, option log-probabilities from top_logprobs, log-likelihoods through echo; bounded concurrency and retries",
    load=OpenAIEngine,
    answers=frozenset({"generate", "options", "loglik"}),
    chunk=256,
    part=lambda model: max(16, 4 * model.concurrency),
    refuses=_refuses,
    local=False,
    pinned_by=base_url,
    key_env=key_env,
).register()
