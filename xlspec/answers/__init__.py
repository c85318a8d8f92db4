"""Answer kinds: how a model's answer to a prompt is read.  One module per kind; each
registers an :class:`AnswerKind` in :data:`ANSWER_KINDS`."""

from .base import ANSWER_KINDS, AnswerKind, Param, kinds_providing

__all__ = ["ANSWER_KINDS", "AnswerKind", "Param", "kinds_providing"]
