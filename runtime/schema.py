"""The results table: one row per request (DESIGN.md, "Results")."""

from __future__ import annotations

import pyarrow as pa

OPTION_MAP = pa.map_(pa.string(), pa.float64())

RESULTS_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("cell_id", pa.string()),
        ("request_id", pa.string()),
        ("model", pa.string()),
        ("dataset", pa.string()),
        ("item_id", pa.string()),
        ("language", pa.string()),
        ("country", pa.string()),
        ("framing", pa.string()),
        ("mode", pa.string()),
        ("partition", pa.string()),
        ("subset", pa.string()),
        ("shots", pa.int32()),
        ("sample", pa.int32()),
        ("answer_kind", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("parsed_answer", pa.string()),
        ("refused", pa.bool_()),
        ("option_logprobs", OPTION_MAP),
        ("option_probs", OPTION_MAP),
        ("gold", pa.string()),
        ("targets", pa.list_(pa.string())),
        ("human", OPTION_MAP),
        ("scale_min", pa.float64()),
        ("scale_max", pa.float64()),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("latency_ms", pa.float64()),
        ("engine", pa.string()),
        ("error", pa.string()),
    ]
)
