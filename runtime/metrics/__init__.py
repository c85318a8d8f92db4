"""Metric computation over the results table (DESIGN.md, "Metrics")."""

from .library import EPS, compute_metrics, js_divergence, kendall_tau_b, kl_divergence, token_f1
from .normalize import base_language, normalize_answer, normalize_label, tokenize

__all__ = [
    "compute_metrics",
    "normalize_answer",
    "normalize_label",
    "tokenize",
    "base_language",
    "kl_divergence",
    "js_divergence",
    "token_f1",
    "kendall_tau_b",
    "EPS",
]
