"""Inference engines.  ``make_engine`` picks one by ``ModelConfig.engine``; each engine module
imports its heavy dependencies (torch, transformers, vLLM) only when it is used."""

from __future__ import annotations

from .base import Engine, EngineRequest, EngineResult, ModelConfig

__all__ = ["Engine", "EngineRequest", "EngineResult", "ModelConfig", "make_engine"]


def make_engine(config: ModelConfig) -> Engine:
    """``hf`` and ``vllm`` load ``config.source``; ``fake`` reads ``counter_path`` and
    ``fail_marker`` from ``config.settings``."""
    if config.engine == "hf":
        from .hf import HFEngine

        return HFEngine(config, device=config.settings.get("device"))
    if config.engine == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine(config)
    if config.engine == "fake":
        from .fake import FakeEngine

        return FakeEngine(
            config,
            counter_path=config.settings.get("counter_path"),
            fail_marker=config.settings.get("fail_marker"),
        )
    raise ValueError(f"unknown engine {config.engine!r}; expected hf, vllm or fake")
