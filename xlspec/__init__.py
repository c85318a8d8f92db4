"""xlspec: compile cross-lingual LLM evaluation specs into deterministic plans and run them."""

__version__ = "0.1.0"
