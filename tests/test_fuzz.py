"""The compiler and ``xlspec fmt`` under a few thousand mutated inputs (see
tests/support/fuzz.py): no exception escapes, nothing hangs, every caret is inside its file,
and fmt accepts exactly what compile accepts.  ``bench/fuzz.py`` runs the same loop longer.
"""

import pytest

from support import fuzz


@pytest.mark.slow
def test_no_input_escapes_diagnostics(tmp_path):
    tally = fuzz.run(1500, seed=20261203, workspace=str(tmp_path), limit_s=15.0)
    assert tally.total == 1500
    # Both ends of the pipeline are reached: some mutants still compile to plans.
    assert tally.counts["ok"] > 0 and tally.counts["diagnostics"] > 0
    report = "\n\n".join(f"#{i} {kind} ({label} of {seed}):\n{detail}" for i, label, seed, kind, detail, _ in tally.failures[:5])
    assert not tally.failures, f"{len(tally.failures)} of {tally.total} inputs failed:\n{report}"


def test_the_fuzzer_finds_an_escaping_exception(tmp_path, monkeypatch):
    """The harness itself: an exception inside compile is reported, not swallowed."""
    import xlspec.api

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(xlspec.api, "compile_file", broken)
    tally = fuzz.run(3, seed=1, workspace=str(tmp_path))
    assert tally.counts["exception"] == 3 and "KeyError" in tally.failures[0][4]
