"""The checked spec: what the checker hands to expansion (typed, validated, names resolved).

Everything here is plain data; filters are JSON-able trees (see :mod:`xlspec.items`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldMap(_Model):
    """A dataset field as the spec maps it: ``text = question[lang]``."""

    source: str | list[str]
    index: Literal["lang", "country"] | None = None


class DatasetSpec(_Model):
    name: str
    format: Literal["jsonl", "csv", "parquet", "hf", "responses"]
    path: str = Field(description="as written, relative to the declaring spec file (empty for responses and hub ids)")
    abs_path: str = Field(exclude=True)
    hub_id: str | None = None
    """``hf("org/name")``: the hub id; a local folder has ``path`` instead."""
    config: str | None = None
    configs: dict[str, str] | None = None
    """``hf``: language -> config, where the config depends on the language."""
    split: str | None = None
    revision: str | None = None
    sha256: str
    fields: dict[str, FieldMap]
    scale: tuple[float, float] | None = None
    labels: Literal["numbers", "letters"] = "letters"
    gold_is: Literal["label", "index", "text"] | None = None
    """How ``gold`` names the right option (:data:`xlspec.items.GOLD_READINGS`), as the spec
    says or the checker reads it off every record; None without options or gold."""
    study: str | None = None
    """``responses(STUDY)``: the upstream study whose responses are the items."""
    pair: str | None = None
    """``responses(STUDY, pair = model)``: the upstream axis whose values are paired, so an
    item is two responses to one upstream item that differ only in that axis."""


def _setting(default: Any, summary: str, *, identity: bool | str = True, engines: Literal["local", "api"] | None = None, minimum: int | None = None) -> Any:
    """A model setting.  ``identity``: it can change what the model answers, so it is part of
    every cell id and request id that uses the model (:mod:`xlspec.identity`).
    ``"unless-default"``: a setting added after ids were first published, part of the
    identity only where it is not at its default, so the ids of models that do not use it
    (and their stored answers) stay as they were.  ``engines``: the engines the setting
    means something to, ``local`` ones (that run the weights here: hf, vllm) or ``api``
    ones (clients of a server: openai); None: every engine.  A spec that sets it for
    another engine gets an error.  Settings of some engines only are left out of a plan at their default, so plans
    of models that do not use them keep their bytes."""
    extra: dict[str, Any] = {"identity": identity}
    if engines is not None:
        extra["engines"] = engines
    if minimum is not None:
        extra["minimum"] = minimum
    return Field(default, description=summary, json_schema_extra=extra)


class ModelSpec(_Model):
    """A model as the spec declares it, the plan records it and an engine is built from it:
    the one definition of a model's fields.  The spec's settings block takes every field
    but ``engine`` and ``source`` (which the call gives: ``hf("org/name")``)."""

    engine: str = _setting(..., "the inference engine")
    source: str = _setting(..., "builtin:smollm2-135m-instruct, a local model folder (relative to the spec) or a Hugging Face model id; for openai, the server's model name")
    revision: str | None = _setting(None, "a Hugging Face revision (branch, tag or commit)", engines="local")
    head: Literal["lm", "classifier"] = _setting("lm", "lm: a causal language model (generate, options, loglik, implicit_reward); classifier: a sequence-classification head (reward, classify)", identity="unless-default")
    chat: bool = _setting(True, "apply the model's chat template (false for base models: the prompt is sent as is); openai: the chat completions endpoint (false: plain completions)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _setting("auto", "weights and activations: auto, float32, bfloat16, float16", engines="local")
    max_model_len: int | None = _setting(None, "the longest prompt + answer in tokens (default: the model's)", engines="local")
    tensor_parallel: int = _setting(1, "GPUs per engine replica", identity=False, engines="local")
    batch_size: int = _setting(64, "sequences per forward pass (hf engine)", identity=False, engines="local")
    base_url: str | None = _setting(None, "openai: the server's OpenAI-compatible API root, such as http://localhost:8000/v1 (default: https://api.openai.com/v1)", identity="unless-default", engines="api")
    api_key_env: str | None = _setting(None, "openai: the environment variable holding the API key, read at run time and never written anywhere (default: OPENAI_API_KEY for api.openai.com, no key for another base_url)", identity=False, engines="api")
    concurrency: int = _setting(8, "openai: requests in flight at once", identity=False, engines="api")
    timeout: int = _setting(120, "openai: seconds one request may take before it is retried", identity=False, engines="api")
    top_logprobs: int = _setting(20, "openai: the most probable tokens asked for at an `options` answer position (OpenAI's chat endpoint allows 20, its /completions 5)", identity="unless-default", engines="api")
    attributes: dict[str, float | str | bool] = _setting({}, "what is known about the model, for grouping and fits: { params: 8e9, train_languages: 4, type: \"instruct\" } (not part of any id)", identity=False)
    max_retries: int = _setting(5, "openai: retries of a request after a 429, a 5xx, a timeout or a dropped connection (with exponential backoff and jitter, honouring Retry-After); a request that still fails becomes an error row, retried by the next run", identity=False, engines="api", minimum=0)

    def plan_entry(self) -> dict[str, Any]:
        """The model as a plan records it: settings of some engines only are left out at
        their default."""
        out = self.model_dump()
        for k, f in type(self).model_fields.items():
            if k in _PLAN_OPTIONAL and out[k] == f.default:
                del out[k]
        return out

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Settings a spec can write in a model's block -> their pydantic field info."""
        return {k: f for k, f in cls.model_fields.items() if k not in ("engine", "source")}

    @classmethod
    def setting_engines(cls, key: str) -> str | None:
        """The engines a setting means something to: ``local``, ``api``, or None (every
        engine)."""
        return (cls.model_fields[key].json_schema_extra or {}).get("engines")

    @classmethod
    def identity_fields(cls) -> tuple[str, ...]:
        return tuple(k for k, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("identity", True))

    @classmethod
    def identity_defaults(cls) -> dict[str, Any]:
        """Identity settings left out of ids at their default -> that default."""
        return {k: f.default for k, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("identity") == "unless-default"}


_PLAN_OPTIONAL = ("base_url", "api_key_env", "concurrency", "timeout", "max_retries", "top_logprobs", "attributes")
"""Settings added after the first plans (the openai engine's, attributes): a plan lists
them only where they are not at their default."""


class FramingSpec(_Model):
    templates: dict[str, str] = Field(description="the prompt template per language code: en = \"...\"")
    system: dict[str, str] | None = Field(None, description="a system prompt: one string for every language, or a map from language code to string (chat models)")
    default: str | None = Field(None, description="the template of every language the framing gives none of its own, when the spec says so: default = \"...\" (a language without a template is otherwise an error)", exclude=True)


class ModeSpec(_Model):
    instruction: dict[str, str] | None = Field(None, description="text added after the framed prompt, after a blank line: one string, or a map from language code to string")
    """Per language; the key ``*`` holds an instruction used for every language."""
    max_tokens: int = Field(16, description="the most tokens a generated answer may have")
    temperature: float = Field(0.0, description="sampling temperature, 0 to 2 (0: greedy)")
    top_p: float = Field(1.0, description="nucleus sampling: the probability mass sampled from, 0 to 1")


class AnswerSpec(_Model):
    """An answer kind of a study (:mod:`xlspec.answers`) with its arguments."""

    kind: str
    parser: str | None = None
    """``generate``: the answer parser's name (:mod:`xlspec.parsers`)."""
    parser_args: dict[str, Any] | None = None
    """The parser's arguments (``regex``: the pattern), absent for parsers that take none."""
    args: dict[str, Any] | None = None
    """Arguments of kinds that take more (``pairwise``: the candidate fields ``a`` and ``b``,
    the scores of a tie and of an unreadable verdict, ``swap``)."""


class MetricSpec(_Model):
    name: str
    args: dict[str, Any] = {}
    by: list[str] | None = None
    label: str


class StudySpec(_Model):
    name: str
    models: list[str]
    datasets: list[str]
    countries: dict[str, str] | None = None
    """country code -> native language, when the study has a country axis."""
    languages: dict[str, list[str]]
    """country code ("" without a country axis) -> the languages of that country's cells."""
    framings: list[str]
    modes: list[str]
    partitions: list[str] | None = None
    subsets: list[str] | None = None
    where: Any = None
    shots: list[int] = [0]
    fewshot: str | None = None
    seeds: list[int] = [0]
    samples: int = 1
    answers: list[AnswerSpec]
    metrics: list[MetricSpec] = []
    group_by: list[str] = []
    limit: int | None = None
    axes: list[str] = []
    """The axes the study has, in the order of ``xlspec.axes.CELL_AXES``: the required ones,
    those whose setting it writes, and ``shots``/``seed`` where they take several values.
    Decided once, by the checker; the plan lists these with their values."""


class ReportSpec(_Model):
    name: str
    template: str
    abs_path: str | None = Field(default=None, exclude=True)


class SourceFile(_Model):
    path: str
    sha256: str


class Spec(_Model):
    experiment: str
    title: str = ""
    path: str
    sha256: str
    imports: list[SourceFile] = []
    countries: dict[str, dict[str, str]] = {}
    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSpec]
    framings: dict[str, FramingSpec]
    modes: dict[str, ModeSpec]
    subsets: dict[str, Any] = {}
    studies: dict[str, StudySpec]
    reports: list[ReportSpec] = []
