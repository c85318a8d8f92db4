"""Parse-time benchmark: a dense spec of about 1 MB (the Global-MMLU example repeated with
renamed declarations, ~67,000 tokens) and the example specs one by one.  Prints the median
parse time of several runs and the time per token.

Target: a 1 MB spec in well under a second of parse.

    python bench/parse.py [--runs 5] [--mb 1.0]
"""

from __future__ import annotations

import argparse
import pathlib
import re
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xlspec import syntax  # noqa: E402
from xlspec.diagnostics import Diagnostics  # noqa: E402


def dense_spec(megabytes: float) -> str:
    """The Global-MMLU example, repeated with each copy's declarations renamed (imports
    dropped) until the text reaches ``megabytes``."""
    source = (ROOT / "specs" / "global_mmlu.xls").read_text(encoding="utf-8")
    source = re.sub(r"^import .*$", "", source, flags=re.M)
    copies, size, n = [], 0, 0
    while size < megabytes * 1_000_000:
        copy = re.sub(r"^(\w+) ([\w-]+)", lambda m: f"{m.group(1)} {m.group(2)}_{n}", source, flags=re.M)
        copies.append(copy)
        size += len(copy) + 1
        n += 1
    return "\n".join(copies)


def median_parse(text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        diags = Diagnostics()
        t0 = time.perf_counter()
        tree = syntax.parse(text, "bench.xls", diags)
        times.append(time.perf_counter() - t0)
        assert tree is not None, diags.render() if hasattr(diags, "render") else "syntax errors"
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mb", type=float, default=1.0, help="size of the dense spec in MB")
    args = ap.parse_args()
    syntax.parse("experiment warm_up", "warm.xls")  # load the cached LALR tables
    text = dense_spec(args.mb)
    tokens = sum(1 for _ in syntax._TOKEN_SCAN.finditer(text))
    dense = median_parse(text, args.runs)
    print(f"dense spec: {len(text.encode()) / 1e6:.2f} MB, {tokens:,} tokens: parse {dense:.3f} s median of {args.runs} ({dense / tokens * 1e6:.1f} us/token)")
    for path in sorted((ROOT / "specs").glob("*.xls")):
        small = path.read_text(encoding="utf-8")
        print(f"  {path.name:<18} {len(small.encode()):>7,} bytes: parse {median_parse(small, args.runs) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
