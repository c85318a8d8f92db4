"""Reward-model throughput: the engines' batched ``reward`` requests against a hand-written
transformers loop over the same inputs, one sequence at a time.

Scores N preference pairs (2N sequences: the prompts and answers of
specs/data/preference_pairs.jsonl, repeated with a counter so no two are alike) with the
untrained reward head on the embedded model (builtin:smollm2-135m-untrained-reward) and
prints sequences per second for each way, the ratio of each engine to the loop, and the
largest difference between an engine's scores and the loop's.

    python bench/reward.py [--pairs 120] [--engines hf,vllm]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODEL = "builtin:smollm2-135m-untrained-reward"


def pairs(n: int) -> list[tuple[str, str, str]]:
    rows = [json.loads(line) for line in open(os.path.join(ROOT, "specs", "data", "preference_pairs.jsonl"), encoding="utf-8")]
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        lang = sorted(row["prompt"])[i // len(rows) % len(row["prompt"])]
        out.append((f"{row['prompt'][lang]} ({i})", row["chosen"][lang], row["rejected"][lang]))
    return out


def by_hand(items) -> tuple[float, list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xlspec.runtime.models import resolve_model

    path = resolve_model(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    scores = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for prompt, chosen, rejected in items:
            for answer in (chosen, rejected):
                text = tok.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tokenize=False)
                scores.append(model(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item())
    return time.perf_counter() - t0, scores


def engine(name: str, items) -> tuple[float, float, list[float]]:
    from xlspec.runtime.engines import make_engine
    from xlspec.runtime.engines.base import EngineConfig, EngineRequest
    from xlspec.spec import ModelSpec

    t0 = time.perf_counter()
    eng = make_engine(EngineConfig(name="rm", model=ModelSpec(engine=name, source=MODEL, head="classifier", dtype="float32", max_model_len=1024)))
    load = time.perf_counter() - t0
    try:
        batch = [EngineRequest(f"r{i}", p, "reward", options=(c, r)) for i, (p, c, r) in enumerate(items)]
        eng.run(batch[:4])  # warm-up
        t0 = time.perf_counter()
        results = eng.run(batch)
        wall = time.perf_counter() - t0
    finally:
        eng.close()
    bad = [r.error for r in results if r.error]
    if bad:
        sys.exit(f"{name}: {bad[0]}")
    return load, wall, [s for r in results for s in (r.scores["a"], r.scores["b"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=120)
    ap.add_argument("--engines", default="hf,vllm")
    args = ap.parse_args()
    items = pairs(args.pairs)
    n = 2 * len(items)
    hand, reference = by_hand(items)
    print(f"{n} sequences ({len(items)} pairs), {os.cpu_count()} CPUs")
    print(f"  transformers, one at a time: {n / hand:7.1f} sequences/s")
    for name in args.engines.split(","):
        load, wall, scores = engine(name, items)
        diff = max(abs(a - b) for a, b in zip(scores, reference))
        print(f"  {name:<4} engine, batched:        {n / wall:7.1f} sequences/s  ({hand / wall:.2f}x the loop; loaded in {load:.1f} s; max |score - loop| = {diff:.1e})")


if __name__ == "__main__":
    main()
