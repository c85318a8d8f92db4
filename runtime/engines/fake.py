"""A deterministic stand-in engine for scheduler tests: answers derive from a sha256 of the
prompt, so every run and every machine gives the same results, and every request that
reaches it is appended to a counter file, so a test can assert what was (not) recomputed."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

from .base import EngineRequest, EngineResult, ModelConfig


class FakeEngine:
    name = "fake"

    def __init__(
        self,
        config: ModelConfig | None = None,
        counter_path: str | os.PathLike | None = None,
        fail_marker: str | None = None,
    ):
        """``counter_path``: a file that gets one line (the request id) per request received;
        appends are atomic, so several engines (Ray actors) can share one file.
        ``fail_marker``: requests whose prompt contains it come back with an error."""
        self.config = config
        self.counter_path = Path(counter_path) if counter_path else None
        self.fail_marker = fail_marker

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        if self.counter_path is not None and batch:
            with open(self.counter_path, "a", encoding="utf-8") as f:
                f.write("".join(f"{r.request_id}\n" for r in batch))
        return [self._answer(r) for r in batch]

    def close(self) -> None:
        pass

    @staticmethod
    def received(counter_path: str | os.PathLike) -> list[str]:
        """The request ids received so far, in arrival order (repeats included)."""
        path = Path(counter_path)
        return path.read_text(encoding="utf-8").split() if path.exists() else []

    def _answer(self, r: EngineRequest) -> EngineResult:
        result = EngineResult(request_id=r.request_id, prompt_tokens=len(r.prompt.split()))
        if self.fail_marker and self.fail_marker in r.prompt:
            result.error = "fake failure (fail_marker in prompt)"
            return result
        digest = hashlib.sha256(f"{r.system}\x00{r.prompt}".encode()).digest()
        if r.kind == "generate":
            pick = r.options[digest[0] % len(r.options)] if r.options else digest.hex()[:12]
            result.response = f"Answer: {pick}"
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
        result.response = max(weights, key=weights.__getitem__)
        result.finish_reason = r.kind
        return result
