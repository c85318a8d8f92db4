"""The per-row values the report reads (``runtime/metrics/columns.py``): the same chosen
answer, refusal and top option the metrics use."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xlspec.runtime.metrics.columns import answer_kinds, answered_rows, chosen_answers, kind_rank, refused, top_option


def frame():
    return pd.DataFrame(
        [
            # generate: parsed "B" -> "b"; a refusal; refused missing and nothing parsed -> refused
            {"item_id": "q1", "answer_kind": "generate", "parsed_answer": " B ", "refused": False, "option_probs": None, "error": None},
            {"item_id": "q2", "answer_kind": "generate", "parsed_answer": None, "refused": True, "option_probs": None, "error": None},
            {"item_id": "q3", "answer_kind": None, "parsed_answer": None, "refused": None, "option_probs": None, "error": None},
            # options: argmax (tie between A and C: A, seen first); a runtime label wins over the argmax
            {"item_id": "q1", "answer_kind": "options", "parsed_answer": None, "refused": None, "option_probs": {"A": 0.4, "B": 0.2, "C": 0.4}, "error": None},
            {"item_id": "q2", "answer_kind": "loglik", "parsed_answer": "C", "refused": False, "option_probs": {"A": 3.0, "C": 1.0}, "error": None},
            # an engine error
            {"item_id": "q4", "answer_kind": "generate", "parsed_answer": "٣", "refused": False, "option_probs": None, "error": "CUDA out of memory"},
        ]
    )


def test_answered_rows_keep_the_index():
    df = frame()
    ok = answered_rows(df)
    assert list(ok.index) == [0, 1, 2, 3, 4]
    assert answered_rows(df.drop(columns="error")).equals(df.drop(columns="error"))


def test_kinds_and_ranks():
    df = frame()
    assert list(answer_kinds(df)) == ["generate", "generate", "generate", "options", "loglik", "generate"]
    assert list(kind_rank(df, "choice")) == [0, 0, 0, 1, 2, 0]
    assert list(kind_rank(df, "probs")) == [-1, -1, -1, 0, 1, -1]


def test_chosen_answers_and_refusals():
    df = frame()
    assert list(chosen_answers(df)) == ["b", None, None, "a", "c", "3"]
    assert list(refused(df)) == [False, True, True, False, False, False]
    assert refused(df).dtype == np.bool_


def test_top_option():
    labels, probs = top_option(frame())
    assert list(labels) == [None, None, None, "A", "A", None]
    assert probs[3] == 0.4 and probs[4] == 0.75
    assert all(math.isnan(p) for p in probs[[0, 1, 2, 5]])
