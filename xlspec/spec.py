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
    format: Literal["jsonl", "csv"]
    path: str = Field(description="as written, relative to the declaring spec file")
    abs_path: str = Field(exclude=True)
    sha256: str
    fields: dict[str, FieldMap]
    scale: tuple[float, float] | None = None
    labels: Literal["numbers", "letters"] = "letters"


class ModelSpec(_Model):
    name: str
    engine: Literal["hf", "vllm"]
    source: str
    revision: str | None = None
    chat: bool = True
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel: int = 1
    batch_size: int = 64


class FramingSpec(_Model):
    name: str
    templates: dict[str, str]
    system: dict[str, str] | None = None


class ModeSpec(_Model):
    name: str
    instruction: dict[str, str] | None = None
    """Per language; the key ``*`` holds an instruction used for every language."""
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0


class AnswerSpec(_Model):
    kind: Literal["generate", "options", "loglik"]
    parser: str | None = None
    normalize: bool = False


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
