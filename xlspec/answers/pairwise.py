"""``pairwise(a = chosen, b = rejected)``: a judge sees two candidates and picks one.

The framing shows them as ``{a}`` and ``{b}``; for each item a seeded coin (the item's id and
the cell's seed) decides whether they are shown swapped, and the row records the order it
showed (``candidate_order``: ``ab`` or ``ba``).  The parser reads which shown candidate the
judge picked (``ab_verdict`` reads ``[[A]]``, ``[[B]]`` and ``[[C]]`` for a tie); the verdict
is mapped back through the swap to the candidate it names (``verdict``: ``a``, ``b``, ``tie``,
or null where nothing could be read).  Its ``preference`` score is 1 for ``a``, 0 for ``b``,
and ``tie`` and ``invalid`` for the others (M-RewardBench counts both 0.5).
"""

import hashlib

from .base import AnswerKind, Param

PAIRWISE = AnswerKind(
    name="pairwise",
    summary="a judge picks one of two candidates (the fields `a` and `b`) shown as {a} and {b} in a seeded random order",
    provides={"parsed": 1},
    params=(
        Param("a", "field", "the field holding the first candidate (the one a preference of 1 means: `chosen`)"),
        Param("b", "field", "the field holding the second candidate (`rejected`)"),
        Param("parser", "parser", "how the picked candidate is read: A, B or tie (default: ab_verdict)", default="ab_verdict"),
        Param("tie", "number", "the preference a tie scores", default=0.5),
        Param("invalid", "number", "the preference an unreadable verdict scores", default=0.5),
        Param("swap", "bool", "show the candidates in a seeded random order (false: always a first)", default=True),
    ),
    engine_order=3,
    sampled=True,
    engine_kind="generate",
    score_names=("preference",),
).register()


def shown(answer: dict, values: dict[str, str], item_id: str, seed: int) -> tuple[dict[str, str], str]:
    """The placeholders ``a`` and ``b`` as shown for one item, and the order (``ab`` or
    ``ba``).  The coin is a sha256 of the cell's seed and the item's id: the same item is
    shown the same way in every language, run and machine."""
    args = answer.get("args") or {}
    first, second = values.get(args.get("a", ""), ""), values.get(args.get("b", ""), "")
    swap = args.get("swap", True) and hashlib.sha256(f"{seed}\0{item_id}".encode("utf-8")).digest()[0] & 1
    return ({"a": second, "b": first}, "ba") if swap else ({"a": first, "b": second}, "ab")


def verdict(picked: str | None, order: str) -> str | None:
    """The candidate a shown pick names: ``a``, ``b``, ``tie``, or None (unreadable)."""
    if picked in (None, "tie"):
        return picked
    first = "a" if order == "ab" else "b"
    return first if picked == "A" else ("b" if first == "a" else "a") if picked == "B" else None


def preference(answer: dict, decided: str | None) -> float:
    """1 for ``a``, 0 for ``b``; a tie and an unreadable verdict score as the study says."""
    args = answer.get("args") or {}
    if decided == "a":
        return 1.0
    if decided == "b":
        return 0.0
    return float(args.get("tie", 0.5) if decided == "tie" else args.get("invalid", 0.5))
