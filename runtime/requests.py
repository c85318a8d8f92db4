"""Lowering a plan's cells to engine requests (the runtime reads only the saved plan).

A request's id is a sha256 over everything that decides the engine's answer: the model as
the plan records it, the exact prompt text (after few-shot examples and the mode's
instruction), the system prompt, the answer kind with its options, and, for generation, the
sampling parameters and the sample's seed.  So the same question asked by two cells or two
experiments is computed once, and editing one framing's text changes only its requests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from xlspec.data import Record, read_records
from xlspec.items import ItemView, available, select, view
from xlspec.plan import cell_parts, digest
from xlspec.prompt import fill, render

from .engines.base import EngineRequest

# Model settings that change what a model answers (batch size and parallelism do not).
_MODEL_IDENTITY = ("engine", "source", "revision", "chat", "dtype", "max_model_len")


@dataclass
class CellRequest:
    """One request of a cell, with what the results row needs besides the engine's answer."""

    request: EngineRequest
    item: ItemView
    sample: int
    parser: str | None


class DataCache:
    """Dataset records by path, read once per run."""

    def __init__(self, plan: dict, plan_path: str):
        base = os.path.dirname(os.path.abspath(plan_path))
        self.spec_dir = os.path.dirname(os.path.normpath(os.path.join(base, plan["spec"]["path"])))
        self.plan = plan
        self._records: dict[str, list[Record]] = {}

    def records(self, dataset: str) -> list[Record]:
        if dataset not in self._records:
            entry = self.plan["datasets"][dataset]
            path = os.path.normpath(os.path.join(self.spec_dir, entry["path"]))
            self._records[dataset] = read_records(path, entry["format"])[0]
        return self._records[dataset]


def request_id(model: dict, prompt: str, system: str | None, kind: str, options: tuple[str, ...], normalize: bool, sampling: dict | None, sample: int) -> str:
    key = {
        "model": {k: model.get(k) for k in _MODEL_IDENTITY},
        "prompt": prompt,
        "system": system,
        "kind": kind,
        "options": list(options),
    }
    if kind == "loglik":
        key["normalize"] = normalize
    if kind == "generate":
        key["sampling"] = {k: sampling[k] for k in ("max_tokens", "temperature", "top_p")}
        # Greedy decoding ignores the seed: all samples of a greedy cell are one request.
        key["seed"] = None if sampling["temperature"] == 0 else [sampling["seed"], sample]
    return digest(key)


def _fewshot_block(parts: dict, data: DataCache, plan: dict, cell: dict, exclude_id: str) -> str:
    fs = parts["prompt"]["fewshot"]
    if not fs:
        return ""
    pool_entry = plan["datasets"][fs["dataset"]]
    language, country = cell["axes"]["language"], cell["axes"]["country"]
    shots = []
    for rec in data.records(fs["dataset"]):
        if len(shots) >= fs["shots"]:
            break
        if not available(rec, pool_entry, language):
            continue
        v = view(rec, pool_entry, language, country)
        if v.item_id == exclude_id:
            continue
        answer = v.targets[0] if v.targets else (v.gold or "")
        shots.append(fill(parts["prompt"]["template"], v.values | parts["prompt"]["variables"]) + "\n" + answer)
    return "\n\n".join(shots) + "\n\n" if shots else ""


def cell_requests(plan: dict, cell: dict, data: DataCache, limit: int | None = None) -> list[CellRequest]:
    """Every request of one cell, in a stable order (item, answer kind, sample)."""
    parts = cell_parts(plan, cell)
    axes = cell["axes"]
    selection = parts["items"]
    entry = plan["datasets"][selection["dataset"]]
    cap = selection["limit"]
    if limit is not None:
        cap = limit if cap is None else min(cap, limit)
    records = select(data.records(selection["dataset"]), entry, axes["language"], selection["partition"], selection["filters"], cap)
    prompt_part, sampling = parts["prompt"], parts["sampling"]
    model = parts["model"]
    out: list[CellRequest] = []
    for rec in records:
        item = view(rec, entry, axes["language"], axes["country"])
        text = _fewshot_block(parts, data, plan, cell, item.item_id) + render(prompt_part["template"], item.values | prompt_part["variables"], prompt_part["instruction"])
        for answer in parts["answers"]:
            kind = answer["kind"]
            if kind == "options":
                options = tuple(item.labels)
            elif kind == "loglik":
                options = tuple(item.values.get("option_texts", "").split("\n")) if item.labels else ()
            else:
                options = tuple(item.labels)
            samples = sampling["samples"] if kind == "generate" else 1
            for sample in range(samples):
                rid = request_id(model, text, prompt_part["system"], kind, options, answer.get("normalize", False), sampling, sample)
                req = EngineRequest(
                    request_id=rid,
                    prompt=text,
                    kind=kind,
                    options=options,
                    max_tokens=sampling["max_tokens"],
                    temperature=sampling["temperature"],
                    top_p=sampling["top_p"],
                    seed=sampling["seed"] * 1_000_003 + sample,
                    chat=model["chat"],
                    system=prompt_part["system"],
                )
                out.append(CellRequest(req, item, sample, answer.get("parser")))
    return out
