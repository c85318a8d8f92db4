"""The transformers engine (CPU or one GPU).

Generation is a hand-written greedy/sampling loop over a KV cache rather than
``model.generate``: each request keeps its own ``torch.Generator`` (seeded from
``request.seed``), temperature, top-p and token budget inside one padded batch, which
``generate`` cannot do.  ``options`` and ``loglik`` are single forward passes that keep only
the logits they need (``logits_to_keep``), which is most of their cost on a small model.
"""

from __future__ import annotations

import gc
import json

from xlspec.lazy import lazy

from ..models import resolve_model
from . import common
from .base import EngineConfig, EngineInfo, EngineRequest, EngineResult
from .common import Prepared

torch = lazy("torch")


class HFEngine:
    name = "hf"

    def __init__(self, config: EngineConfig):
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        self.config = config
        self.model_spec = config.model
        self.progress = None  # set by the scheduler: called with n as n more requests are done
        self.deliver = None  # set by the scheduler: called with each group's answers as they finish
        self._first_step: dict = {}  # prompt key -> first-step log-probs, within one run()
        self._riding: dict = {}  # prompt key -> options requests read off its generation
        device = config.settings.get("device")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        path = resolve_model(config.model.source, config.model.revision)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.classifier = config.model.head == "classifier"
        loader = AutoModelForSequenceClassification if self.classifier else AutoModelForCausalLM
        self.model = loader.from_pretrained(path, dtype=self._dtype(path)).to(self.device)
        self.model.eval()
        self.max_len = config.model.max_model_len or getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        # A forward pass takes up to `batch_size` sequences and `batch_tokens` tokens, padding
        # included.  On a CPU a pass of ~1,000 tokens is fastest: scoring 2,700 tokens of
        # loglik rows took 15 s in passes of 512-1,024 tokens, 21 s of 4,096 and 28 s of 8,192
        # (SmolLM2-135M, float32, 2 cores).
        self.batch_size = max(1, config.model.batch_size)
        self.batch_tokens = int(config.settings.get("batch_tokens") or (32768 if self.device.type == "cuda" else 1024))
        generation = getattr(self.model, "generation_config", None)
        eos = generation.eos_token_id if generation is not None else None
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        if self.classifier and self.model.config.pad_token_id is None:
            # A decoder's head reads each row's last token that is not padding; it needs to
            # know the padding token to batch.
            self.model.config.pad_token_id = self.pad_id
        if self.classifier and 0 < (self.tokenizer.model_max_length or 0) < self.max_len:
            self.max_len = self.tokenizer.model_max_length  # RoBERTa: 514 positions, 512 tokens
        # Reference models (a DPO policy's) load with the policy, so a reference that cannot
        # load fails the model, not each request.
        self._references = {
            name: HFEngine(EngineConfig(name=name, model=spec, settings=config.settings))
            for name, spec in sorted(config.references.items())
        }

    def _dtype(self, path):
        """``auto`` keeps the checkpoint's dtype, except float32 checkpoints on a GPU run in
        bfloat16 (as vLLM does); on a CPU it is :func:`common.cpu_auto_dtype` (bfloat16
        checkpoints on a CPU without bfloat16 math run in float32, an order of magnitude
        faster there)."""
        if self.model_spec.dtype != "auto":
            return getattr(torch, self.model_spec.dtype)
        if self.device.type == "cpu":
            return getattr(torch, common.cpu_auto_dtype(path))
        if self.device.type == "cuda" and common.checkpoint_dtype(path) == "float32":
            return torch.bfloat16
        return "auto"

    def run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        """Options requests whose prompt a generate request of the same batch also has are
        read off that generation's first step (the same distribution at the same position):
        one prefill serves both answer kinds, which halves the work of `options + generate`
        studies.  The rest run in forward passes of at most ``batch_size`` sequences and
        ``batch_tokens`` tokens, shortest first."""
        generated = {_prompt_key(r) for r in batch if r.kind == "generate"}
        shared = [i for i, r in enumerate(batch) if r.kind == "options" and _prompt_key(r) in generated]
        shared_set = set(shared)
        rest = [r for i, r in enumerate(batch) if i not in shared_set]
        self._first_step = {}
        self._riding = {}
        for i in shared:
            key = _prompt_key(batch[i])
            self._riding[key] = self._riding.get(key, 0) + 1
        results = dict(zip((i for i in range(len(batch)) if i not in shared_set), self._run(rest)))
        if shared:
            read = [self._read_first_step(batch[i], i) for i in shared]
            fallback = [i for i, res in zip(shared, read) if res is None]
            for i, res in zip(shared, read):
                if res is not None:
                    results[i] = res
            for i, res in zip(fallback, self._run([batch[i] for i in fallback])):
                results[i] = res
        self._first_step = {}
        return [results[i] for i in range(len(batch))]

    def _run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        return common.run_batch(
            batch,
            lambda request, i: common.prepare(self.tokenizer, request, i, self.max_len),
            lambda items: common.by_kind(items, self.batch_size, self.batch_tokens, _row_width),
            self._run_group,
            self._deliver,
        )

    def _deliver(self, results: list[EngineResult]) -> None:
        # an options answer read off a generation is handed over with the rest of the batch
        if self.deliver is not None:
            self.deliver(results)

    def _read_first_step(self, request: EngineRequest, index: int) -> EngineResult | None:
        """The options answer from a generation's first-step log-probabilities, or None
        when that generation did not run (it failed; the request then runs on its own)."""
        found = self._first_step.get(_prompt_key(request))
        if found is None:
            return None
        logprobs, latency = found
        try:
            item = common.prepare(self.tokenizer, request, index, self.max_len)
        except Exception as exc:  # noqa: BLE001 - this request's own failure
            return common.error_result(request, exc)
        label_logprobs = {
            label: torch.logsumexp(logprobs[variant_ids], dim=0).item() for label, variant_ids in item.variants.items()
        }
        result = common.options_result(item, label_logprobs)
        result.latency_ms = latency
        return result

    def close(self) -> None:
        for reference in self._references.values():
            reference.close()
        self._references = {}
        del self.model
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _run_group(self, group: list[Prepared]) -> list[EngineResult]:
        with torch.inference_mode():
            out = common.dispatch(self, group)
        if self.progress is not None:
            # A generation also answers the options requests read off its first step.
            riding = sum(self._riding.pop(_prompt_key(item.request), 0) for item in group) if group[0].request.kind == "generate" else 0
            self.progress(len(group) + riding)
        return out

    def _pad_left(self, seqs: list[list[int]]):
        """Left-padded ids, attention mask and position ids (positions count real tokens
        only, so a padded row sees the same positions as it would alone)."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, width - len(s) :] = torch.tensor(s)
            mask[row, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _forward(self, ids, mask, positions, keep: int):
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=keep,
        )

    def _generate(self, group: list[Prepared]) -> list[EngineResult]:
        ids, mask, positions = self._pad_left([item.prompt_ids for item in group])
        requests = [item.request for item in group]
        budgets = [min(i.request.max_tokens, self.max_len - len(i.prompt_ids)) for i in group]
        generators = [
            torch.Generator(device=self.device).manual_seed(r.seed) if r.temperature > 0 else None
            for r in requests
        ]
        outputs: list[list[int]] = [[] for _ in group]
        finish: list[str | None] = [None if b > 0 else "length" for b in budgets]
        cache = None
        step_ids = ids
        for step in range(max(budgets)):
            out = self.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
            if step == 0:
                # kept only for the prompts an options request reads off this generation
                riding = [row for row, item in enumerate(group) if _prompt_key(item.request) in self._riding]
                if riding:
                    first = torch.log_softmax(out.logits[riding, -1, :].double(), dim=-1).cpu()
                    for i, row in enumerate(riding):
                        self._first_step[_prompt_key(group[row].request)] = (first[i], 0.0)
            greedy = logits.argmax(dim=-1).tolist()  # one device sync for all greedy rows
            next_ids = torch.full((len(group),), self.pad_id, dtype=torch.long)
            for row, request in enumerate(requests):
                if finish[row] is not None:
                    continue
                generator = generators[row]
                if generator is None:
                    token = greedy[row]
                else:
                    token = _sample(logits[row], request, generator)
                next_ids[row] = token
                outputs[row].append(token)
                if token in self.eos_ids:
                    finish[row] = "stop"
                elif len(outputs[row]) >= budgets[row]:
                    finish[row] = "length"
            if all(f is not None for f in finish):
                break
            step_ids = next_ids[:, None].to(self.device)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
        return [
            EngineResult(
                request_id=item.request.request_id,
                response=self.tokenizer.decode(tokens, skip_special_tokens=True),
                prompt_tokens=len(item.prompt_ids),
                output_tokens=len(tokens),
                finish_reason=reason,
            )
            for item, tokens, reason in zip(group, outputs, finish)
        ]

    def _options(self, group: list[Prepared]) -> list[EngineResult]:
        ids, mask, positions = self._pad_left([item.prompt_ids for item in group])
        out = self._forward(ids, mask, positions, keep=1)
        logprobs = torch.log_softmax(out.logits[:, -1, :].double(), dim=-1).cpu()
        results = []
        for row, item in enumerate(group):
            label_logprobs = {
                label: torch.logsumexp(logprobs[row, variant_ids], dim=0).item()
                for label, variant_ids in item.variants.items()
            }
            results.append(common.options_result(item, label_logprobs))
        return results

    def _loglik(self, group: list[Prepared]) -> list[EngineResult]:
        """Every continuation of an item in one row after its prompt, which is computed once:
        the row is the prompt, then each continuation, and a 4D attention mask lets each
        continuation see the prompt and its own earlier tokens only, at the positions it
        would have alone.  An item with k options costs its prompt once instead of k times
        (lm-eval runs prompt + option k times).  A continuation's last token is left out of
        the row: nothing is predicted from it and nothing else attends to it."""
        rows = [_packed_row(item) for item in group]
        width = max(len(ids) for ids, _, _ in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        segments = torch.full((len(rows), width), -1, dtype=torch.long)  # -1 padding, 0 prompt, i option i
        for r, (row_ids, row_pos, row_seg) in enumerate(rows):
            ids[r, width - len(row_ids):] = torch.tensor(row_ids)
            positions[r, width - len(row_ids):] = torch.tensor(row_pos)
            segments[r, width - len(row_ids):] = torch.tensor(row_seg)
        key_seg, query_seg = segments[:, None, :], segments[:, :, None]
        allowed = torch.ones((width, width), dtype=torch.bool).tril()[None] & (key_seg >= 0) & ((key_seg == 0) | (key_seg == query_seg))
        allowed |= torch.eye(width, dtype=torch.bool)[None]  # a padding row attends to itself
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
        # Left padding puts every row's continuations at its end, and each position there
        # predicts a continuation token: the last (1 + its continuation tokens) positions of
        # a row hold every logit it needs.
        keep = max(len(rows[r][0]) - len(item.prompt_ids) + 1 for r, item in enumerate(group))
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), position_ids=positions.to(self.device), use_cache=False, logits_to_keep=keep)
        logits = out.logits.float()
        # (row, kept position it is predicted from, token) for every continuation token
        at_row, at_pos, tokens, owner = [], [], [], []
        n = 0
        for r, item in enumerate(group):
            last = width - len(rows[r][0]) + len(item.prompt_ids) - 1  # the prompt's last token
            start = last + 1
            for cont in item.continuations:
                # a continuation's first token follows the prompt, the others its own tokens
                before = [last] + list(range(start, start + len(cont) - 1))
                at_row += [r] * len(cont)
                at_pos += [p - (width - keep) for p in before]
                tokens += cont
                owner += [n] * len(cont)
                start += len(cont) - 1  # its last token is not in the row
                n += 1
        picked = logits[torch.tensor(at_row), torch.tensor(at_pos)]
        token_logprobs = picked.gather(-1, torch.tensor(tokens, device=picked.device)[:, None]).squeeze(-1) - torch.logsumexp(picked, dim=-1)
        sums = torch.zeros(n, dtype=torch.float64).index_add_(0, torch.tensor(owner), token_logprobs.double().cpu()).tolist()
        return _per_item(group, sums)

    def _loglik_separately(self, group: list[Prepared]) -> list[EngineResult]:
        """Each continuation in a row of its own after its prompt (an implicit reward's
        candidates, whose rows are long and few)."""
        seqs = [item.prompt_ids + cont for item in group for cont in item.continuations]
        conts = [cont for item in group for cont in item.continuations]
        ids, mask, positions = self._pad_left(seqs)
        # Left padding puts every continuation at the end of its row, so the last k+1
        # logits (k = longest continuation) cover them all.
        k = max(len(c) for c in conts)
        logits = self._forward(ids, mask, positions, keep=k + 1).logits[:, :-1, :].float()
        token_logprobs = (
            logits.gather(-1, ids[:, -k:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        ).cpu()
        sums = [token_logprobs[row, k - len(c) :].sum().item() for row, c in enumerate(conts)]
        return _per_item(group, sums)

    # ---- classifier heads and reference models -----------------------------------------

    def _classifier_logits(self, sequences: list[list[int]]):
        """The head's output per input (float64 on the CPU).  Right padding and the model's
        own positions, as transformers pads for these heads: an encoder (BERT, XLM-R) reads
        its first token and numbers positions its own way, a decoder reads its last token
        that is not padding; either way each row computes what it would alone."""
        if not self.classifier:
            raise common.RequestError(f"model `{self.config.name}` is a language model (head = lm); reward and classify need head = classifier")
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.model.config.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return out.logits.double().cpu()

    def _reward(self, group: list[Prepared]) -> list[EngineResult]:
        common.check_reward_head(self.model.config.num_labels, self.config.name)
        return common.reward_results(group, self._classifier_logits([seq for item in group for seq in item.sequences]).tolist())

    def _classify(self, group: list[Prepared]) -> list[EngineResult]:
        return common.classify_group(group, self.model.config, lambda seqs: self._classifier_logits(seqs).tolist())

    def _implicit_reward(self, group: list[Prepared]) -> list[EngineResult]:
        """Each candidate's summed log-probability as the answer to the prompt, under this
        model and under the request's reference model (run by this engine, with its own
        tokenizer and chat setting)."""
        from dataclasses import replace

        policy = self._loglik_separately(group)
        by_reference: dict[str, list[int]] = {}
        for row, item in enumerate(group):
            by_reference.setdefault(item.request.reference or "", []).append(row)
        results: list[EngineResult] = [None] * len(group)  # type: ignore[list-item]
        for name, rows in by_reference.items():
            reference = self._reference(name)
            # the reference reads each candidate as the policy does: tokenized on its own
            asked = [replace(group[r].request, chat=reference.model_spec.chat) for r in rows]
            scored = common.run_batch(
                asked,
                lambda request, i: common.prepare(reference.tokenizer, request, i, reference.max_len),
                lambda items: [items],
                reference._loglik_separately,
            )
            for r, ref in zip(rows, scored):
                item, mine = group[r], policy[r]
                if ref.error is not None:
                    results[r] = EngineResult(request_id=item.request.request_id, error=f"reference model `{name}`: {ref.error}")
                    continue
                scores = {}
                for letter, text in zip("ab", item.request.options):
                    scores[letter] = mine.option_logprobs[text]
                    scores[f"{letter}@reference"] = ref.option_logprobs[text]
                results[r] = EngineResult(
                    request_id=item.request.request_id,
                    scores=scores,
                    prompt_tokens=mine.prompt_tokens + ref.prompt_tokens,
                    finish_reason="implicit_reward",
                )
        return results

    def _reference(self, name: str) -> "HFEngine":
        if name not in self._references:
            raise common.RequestError(f"reference model `{name}` is not known to this engine (recompile the plan)")
        return self._references[name]


def _per_item(group: list[Prepared], sums: list[float]) -> list[EngineResult]:
    """Each item's loglik answer from the sums of every continuation of the group, in order."""
    results, start = [], 0
    for item in group:
        k = len(item.continuations)
        results.append(common.loglik_result(item, sums[start : start + k]))
        start += k
    return results


def _packed_row(item: Prepared) -> tuple[list[int], list[int], list[int]]:
    """A loglik item's row: (token ids, positions, segment: 0 the prompt, i the i-th option).
    Each option goes in without its last token, which predicts nothing that is scored."""
    n = len(item.prompt_ids)
    ids, positions, segments = list(item.prompt_ids), list(range(n)), [0] * n
    for i, cont in enumerate(item.continuations, 1):
        ids += cont[:-1]
        positions += range(n, n + len(cont) - 1)
        segments += [i] * (len(cont) - 1)
    return ids, positions, segments


def _row_width(item: Prepared) -> tuple[int, int]:
    """(rows, tokens per row) a request takes in a forward pass: a loglik item is one packed
    row, a generation or an options request its prompt, a classifier input its longest."""
    kind = item.request.kind
    if kind == "loglik":
        return 1, len(item.prompt_ids) + sum(len(c) - 1 for c in item.continuations)
    if kind == "implicit_reward":
        return len(item.continuations), len(item.prompt_ids) + max(len(c) for c in item.continuations)
    if item.sequences:
        return len(item.sequences), max(len(s) for s in item.sequences)
    # a generation's prompt: its decoding steps run one token per row
    return 1, len(item.prompt_ids)


SETTINGS = {"batch_tokens": "the most tokens in one forward pass, padding included (a whole number, at least 1)"}
"""What ``XLSPEC_HF_ARGS`` may set."""


def _settings_problem(settings: dict) -> str | None:
    """What is wrong with ``XLSPEC_HF_ARGS``, or None."""
    for key, value in settings.items():
        if key not in SETTINGS:
            return f"unknown setting `{key}`; it may set: " + "; ".join(f"`{k}`, {v}" for k, v in SETTINGS.items())
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"`{key}` is {json.dumps(value)}; it is {SETTINGS[key]}"
    return None


def _prompt_key(request: EngineRequest) -> tuple:
    return (request.prompt, request.chat, request.system)


def _sample(logits, request: EngineRequest, generator) -> int:
    """Nucleus sampling with the request's own generator."""
    probs = torch.softmax(logits / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < request.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


EngineInfo(
    name="hf",
    summary="transformers on one GPU or the CPU: batched generation, option probabilities, log-likelihoods, DPO implicit rewards, and reward and classifier heads",
    load=HFEngine,
    answers=frozenset({"generate", "options", "loglik", "implicit_reward", "reward", "classify"}),
    chunk=256,
    settings_env="XLSPEC_HF_ARGS",
    settings_example='{"batch_tokens": 4096}',
    check_settings=_settings_problem,
).register()
