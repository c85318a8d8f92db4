"""Fuzz the compiler and the formatter with seeded mutations of the example specs and the
test fixtures, and print what happened to every input.

Each input must end in a plan or in located diagnostics (exit status 0 or 2), within the
time limit, with every diagnostic's line and column inside its file; where it compiles,
``fmt`` must accept it, be idempotent and keep the plan.  See tests/support/fuzz.py for the
mutations (byte flips, invalid UTF-8, NUL bytes, lone surrogates, CR-only and U+2028 line
breaks, megabyte lines, deep nesting, imports of devices, FIFOs and odd paths, ...).

    python bench/fuzz.py [-n 10000] [--seed 1] [--limit-s 10]

Exit status 1 when any input failed; failing inputs are kept in the scratch folder printed
at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from support import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="number of inputs (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit-s", type=float, default=10.0, help="time limit per input (default 10 s)")
    ap.add_argument("--slow-s", type=float, default=2.0, help="inputs slower than this are counted (default 2 s)")
    args = ap.parse_args()
    workspace = tempfile.mkdtemp(prefix="xlspec-fuzz-")
    start = time.perf_counter()

    def progress(i, outcome):
        if (i + 1) % 500 == 0:
            print(f"  {i + 1:,} inputs, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    tally = fuzz.run(args.n, args.seed, workspace, args.limit_s, args.slow_s, progress)
    elapsed = time.perf_counter() - start
    print(f"{tally.total:,} inputs in {elapsed:.0f} s ({elapsed / max(tally.total, 1) * 1000:.0f} ms each), seed {args.seed}")
    for kind in ("ok", "diagnostics", "exception", "hang", "bad-location", "bad-status", "fmt"):
        print(f"  {kind:<13} {tally.counts.get(kind, 0):>7,}")
    print(f"  slower than {args.slow_s:g} s: {tally.slow:,}; slowest {tally.slowest:.2f} s")
    if tally.slow_labels:
        print("  the slow ones by mutation: " + ", ".join(f"{k} {v}" for k, v in tally.slow_labels.most_common(6)))
    for i, label, seed, kind, detail, keep in tally.failures[:20]:
        print(f"\n#{i} {kind} ({label} of {seed}) kept as {keep}\n{detail}")
    if tally.failures:
        print(f"\n{len(tally.failures)} failing inputs kept in {workspace}/failures")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
