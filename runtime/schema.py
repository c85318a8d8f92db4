"""The results table: one row per request (its columns are documented in docs/results.md).

The axis columns come from :mod:`xlspec.axes`, so a new axis is a new column everywhere.
"""

from __future__ import annotations

import pyarrow as pa

from xlspec.axes import CELL_AXES, ROW_AXES

OPTION_MAP = pa.map_(pa.string(), pa.float64())


def _axis_column(axis) -> tuple[str, pa.DataType]:
    return (axis.name, pa.int32() if axis.integer else pa.string())


RESULTS_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("study", pa.string()),
        ("cell_id", pa.string()),
        ("request_id", pa.string()),
        *(_axis_column(a) for a in CELL_AXES),
        ("item_id", pa.string()),
        ("upstream_request_id", pa.string()),
        ("upstream", pa.map_(pa.string(), pa.string())),
        *(_axis_column(a) for a in ROW_AXES),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("parsed_answer", pa.string()),
        ("refused", pa.bool_()),
        ("unparsable", pa.bool_()),
        ("candidate_order", pa.string()),
        ("verdict", pa.string()),
        ("scores", OPTION_MAP),
        ("invalid_scores", pa.list_(pa.string())),
        ("option_logprobs", OPTION_MAP),
        ("option_probs", OPTION_MAP),
        ("option_tokens", OPTION_MAP),
        ("correct", pa.bool_()),
        ("gold", pa.string()),
        ("n_options", pa.int32()),
        ("targets", pa.list_(pa.string())),
        ("item_fields", pa.map_(pa.string(), pa.string())),
        ("human", OPTION_MAP),
        ("scale_min", pa.float64()),
        ("scale_max", pa.float64()),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("latency_ms", pa.float64()),
        ("engine", pa.string()),
        ("model_source", pa.string()),
        ("model_revision", pa.string()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int32()),
        ("engine_prompt", pa.string()),
        ("retries", pa.int32()),
        ("error", pa.string()),
    ]
)
