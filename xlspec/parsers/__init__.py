"""Answer parsers: read the answer from generated text.  One module per parser family; each
registers :class:`Parser` entries in :data:`PARSERS`."""

from .base import PARSERS, Parser, ParserParam, build, score_names

__all__ = ["PARSERS", "Parser", "ParserParam", "build", "score_names"]
