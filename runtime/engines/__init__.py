"""Inference engines: one module per engine, each registering an ``EngineInfo`` in
``ENGINES`` (see ``base.py``).  Importing an engine module does not import its heavy
dependencies (torch, transformers, vLLM); building the engine does."""

from __future__ import annotations

from .base import ENGINES, Engine, EngineConfig, EngineInfo, EngineRequest, EngineResult

__all__ = ["ENGINES", "Engine", "EngineConfig", "EngineInfo", "EngineRequest", "EngineResult", "make_engine"]


def make_engine(config: EngineConfig) -> Engine:
    return ENGINES[config.model.engine].load(config)
