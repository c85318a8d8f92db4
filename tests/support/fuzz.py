"""A seeded mutation fuzzer for the compiler and ``xlspec fmt``.

Shared by ``tests/test_fuzz.py`` (a few thousand inputs, in the suite) and ``bench/fuzz.py``
(as many as asked, with counts printed).  Each input is a mutation of an example spec or a
fixture, written beside its seed (so imports and data paths resolve) in a scratch copy of
the seed's folder, then given to ``xlspec compile`` and ``xlspec fmt`` in-process, under a
time limit.  An input passes when

- no exception escapes the command (the command line's last-resort handler is bypassed, so
  an internal error counts as a failure);
- the exit status is 0 (a plan) or 2 (diagnostics), and diagnostics were printed for 2;
- every diagnostic's line and column lie inside the file it names, counting lines the way
  the parser does;
- it finishes within the time limit;
- where it compiles, ``fmt`` accepts it too, formatting twice changes nothing more, and the
  formatted spec compiles to the same plan.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_FOLDERS = ("specs", os.path.join("tests", "fixtures", "diagnostics"), os.path.join("tests", "fixtures", "fmt"), os.path.join("tests", "fixtures", "plans"))


class Hang(Exception):
    pass


@dataclass
class Outcome:
    kind: str
    """ok (a plan), diagnostics (exit 2 with diagnostics), exception, hang, bad-location, bad-status, fmt"""
    seconds: float
    detail: str = ""


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    mutations: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)
    slowest: float = 0.0
    slow: int = 0
    slow_labels: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def failed(self) -> list:
        return self.failures


# ---- mutations ---------------------------------------------------------------------------

_DEEP = 2000


def _splice(rng: random.Random, data: bytes, insert: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + insert + data[at:]


def _value_site(rng: random.Random, data: bytes) -> int | None:
    """A position just after `= ` in a setting: where a value starts."""
    sites = [i + 2 for i in range(len(data) - 2) if data[i : i + 2] == b"= "]
    return rng.choice(sites) if sites else None


def _replace_value(rng: random.Random, data: bytes, value: bytes) -> bytes:
    at = _value_site(rng, data)
    if at is None:
        return data + b"\nx = " + value + b"\n"
    end = data.find(b"\n", at)
    end = len(data) if end < 0 else end
    return data[:at] + value + data[end:]


def m_flip(rng, data, ctx):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def m_insert_bytes(rng, data, ctx):
    pool = [b"\xff", b"\xc3", b"\x00", b"\r", b"\r\n", "\u2028".encode(), "\u2029".encode(), b"\x0b", b"\x0c", "\u0085".encode(), b'"', b'"""', b"{", b"}", b"[", b"(", b"#", b"\\", b"\t", "\ufeff".encode(), b"\xed\xa0\x80"]
    for _ in range(rng.randint(1, 3)):
        data = _splice(rng, data, rng.choice(pool))
    return data


def m_delete(rng, data, ctx):
    if not data:
        return data
    a = rng.randrange(len(data))
    return data[:a] + data[a + rng.randint(1, 40) :]


def m_duplicate(rng, data, ctx):
    if not data:
        return data
    a = rng.randrange(len(data))
    piece = data[a : a + rng.randint(1, 200)]
    return _splice(rng, data, piece)


def m_swap_lines(rng, data, ctx):
    lines = data.split(b"\n")
    if len(lines) < 2:
        return data
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def m_word(rng, data, ctx):
    """Replace a word with another word from the same file or the spec vocabulary."""
    import re

    words = re.findall(rb"[A-Za-z_][A-Za-z0-9_-]*", data)
    if not words:
        return data
    vocab = words + [b"en", b"xx", b"it", b"zz-Latn", b"accuracy", b"agreement", b"parity_gap", b"rank_stability", b"options", b"loglik", b"generate", b"language", b"framing", b"model", b"partition", b"mode", b"import", b"not", b"in", b"and", b"or", b"true", b"1e308", b"-1", b"0", b"nan"]
    old = rng.choice(words)
    new = rng.choice(vocab)
    idx = [m.start() for m in re.finditer(re.escape(old), data)]
    at = rng.choice(idx)
    return data[:at] + new + data[at + len(old) :]


def m_line_endings(rng, data, ctx):
    style = rng.choice([b"\r", b"\r\n", "\u2028".encode(), b"\n\r"])
    if style == "\u2028".encode():  # only inside comments and strings it is text
        return data.replace(b"# ", b"# \xe2\x80\xa8", 3)
    return data.replace(b"\n", style)


def m_surrogate(rng, data, ctx):
    esc = rng.choice([b"\\ud800", b"\\udfff", b"\\ud83d\\ude00", b"\\ud83d", b"\\u0000", b"\\uZZZZ", b"\\"])
    quote = [i + 1 for i in range(len(data)) if data[i : i + 1] == b'"']
    if not quote:
        return data + b'\nexperiment x "' + esc + b'"\n'
    return _splice_at(data, rng.choice(quote), esc)


def _splice_at(data: bytes, at: int, insert: bytes) -> bytes:
    return data[:at] + insert + data[at:]


def m_long_line(rng, data, ctx):
    n = rng.choice([10_000, 200_000, 1_000_000])
    kind = rng.randrange(5)
    if kind == 0:
        line = b"# " + b"x" * n
    elif kind == 1:
        return _replace_value(rng, data, b'"' + b"a" * n + b'"')
    elif kind == 2:
        line = b"x" * n
    elif kind == 3:
        return _replace_value(rng, data, b"[" + b"en, " * (n // 4) + b"]")
    else:
        return _replace_value(rng, data, b"en" + b" + fr" * (n // 5))
    return _splice(rng, data, b"\n" + line + b"\n")


def m_deep(rng, data, ctx):
    n = rng.choice([100, 600, _DEEP, 20_000])
    kind = rng.randrange(6)
    if kind == 0:
        v = b"[" * n + b"en" + b"]" * n
    elif kind == 1:
        v = b"(" * n + b"en" + b")" * n
    elif kind == 2:
        v = b"en" + b" + fr" * n
    elif kind == 3:
        v = b"{ a = " * n + b"1" + b" }" * n
    elif kind == 4:
        v = b"not " * n + b"true"
    else:
        v = b"[" * n  # never closed
    return _replace_value(rng, data, v)


def m_import(rng, data, ctx):
    target = rng.choice(
        [
            b"/dev/zero",
            b"/dev/null",
            b"/dev/urandom",
            b"a\\u0000b.xls",
            b".",
            b"..",
            b"no_such.xls",
            ctx["fifo"].encode(),
            ctx["big"].encode(),
            ctx["binary"].encode(),
            ctx["self"].encode(),
            b"\\ud800.xls",
            b"",
            b"/proc/self/status",
        ]
    )
    return b'import "' + target + b'"\n' + data


def m_data_path(rng, data, ctx):
    """Point a dataset or a report at an odd path."""
    import re

    target = rng.choice([b"/dev/zero", ctx["fifo"].encode(), b"/etc/passwd", b"../../../../etc/passwd", b".", b"a\\u0000b.jsonl", ctx["binary"].encode(), ctx["deep_json"].encode()])
    m = list(re.finditer(rb'(jsonl|csv)\("[^"]*"\)', data)) + list(re.finditer(rb'report \w+ = "[^"]*"', data))
    if not m:
        return data
    hit = rng.choice(m)
    text = hit.group()
    q1 = text.index(b'"')
    q2 = text.rindex(b'"')
    return data[: hit.start()] + text[: q1 + 1] + target + text[q2:] + data[hit.end() :]


MUTATIONS = {
    "flip": (m_flip, 14),
    "insert-bytes": (m_insert_bytes, 14),
    "delete": (m_delete, 12),
    "duplicate": (m_duplicate, 8),
    "swap-lines": (m_swap_lines, 6),
    "word": (m_word, 20),
    "line-endings": (m_line_endings, 6),
    "surrogate": (m_surrogate, 5),
    "long-line": (m_long_line, 2),
    "deep": (m_deep, 4),
    "import": (m_import, 5),
    "data-path": (m_data_path, 4),
}


# ---- running -----------------------------------------------------------------------------


def seeds(root: str) -> list[str]:
    out = []
    for folder in SEED_FOLDERS:
        base = os.path.join(root, folder)
        for name in sorted(os.listdir(base)):
            if name.endswith(".xls") and not name.endswith(".expected.xls"):
                out.append(os.path.join(folder, name))
    return out


def prepare(workspace: str) -> dict:
    """Copy the seed folders into ``workspace`` and make the odd files imports point at."""
    for folder in SEED_FOLDERS:
        shutil.copytree(os.path.join(ROOT, folder), os.path.join(workspace, folder), ignore=shutil.ignore_patterns("*.expected.*", "__pycache__"))
    odd = os.path.join(workspace, "odd")
    os.makedirs(odd)
    fifo = os.path.join(odd, "pipe.xls")
    os.mkfifo(fifo)
    big = os.path.join(odd, "big.xls")
    with open(big, "wb") as f:
        f.write(b"# filler\n" * (8 * 1024 * 1024 // 9 + 1))
    binary = os.path.join(odd, "binary.xls")
    with open(binary, "wb") as f:
        f.write(bytes(range(256)) * 16)
    deep_json = os.path.join(odd, "deep.jsonl")
    with open(deep_json, "w") as f:
        f.write('{"id": 1, "x": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    return {"fifo": fifo, "big": big, "binary": binary, "deep_json": deep_json, "self": "_fuzz.xls"}


def _alarm(signum, frame):
    raise Hang()


def _call(argv: list[str]) -> tuple[int, str, str]:
    from xlspec import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.run_command(argv)
    return status, out.getvalue(), err.getvalue()


def _locations_ok(report: str) -> str | None:
    """None when every diagnostic's line and column lie inside its file."""
    from xlspec.source import read_source

    try:
        diags = json.loads(report)["diagnostics"]
    except (ValueError, KeyError):
        return f"not JSON diagnostics: {report[:200]!r}"
    texts: dict[str, list[str] | None] = {}
    for d in diags:
        s = d["span"]
        if s is None:
            continue
        if s["file"] not in texts:
            try:
                texts[s["file"]] = read_source(s["file"]).text.split("\n")
            except Exception:
                texts[s["file"]] = None
        lines = texts[s["file"]]
        if lines is None:
            continue  # a file that cannot be read as a spec (a data file, a plan): not checked
        if not 1 <= s["line"] <= len(lines):
            return f"{d['code']} at line {s['line']} of a {len(lines)}-line file: {d['message']}"
        if not 1 <= s["col"] <= len(lines[s["line"] - 1]) + 1:
            return f"{d['code']} at {s['line']}:{s['col']}, the line has {len(lines[s['line'] - 1])} characters: {d['message']}"
    return None


def check_one(path: str, out_dir: str, limit_s: float) -> Outcome:
    """Compile and format one input; see the module docstring for what passes."""
    start = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        status, out, err = _call(["compile", "--format", "json", "-o", out_dir, path])
        if status not in (0, 2):
            return Outcome("bad-status", time.perf_counter() - start, f"compile exit {status}: {err[-300:]}")
        if status == 2:
            if '"diagnostics"' not in out or '"severity": "error"' not in out:
                return Outcome("bad-status", time.perf_counter() - start, f"exit 2 without error diagnostics: {out[-300:]}{err[-300:]}")
        bad = _locations_ok(out) if out.strip().startswith("{") else None
        if bad:
            return Outcome("bad-location", time.perf_counter() - start, bad)
        fstatus, fout, ferr = _call(["fmt", "--check", path])
        if status == 0:
            if fstatus not in (0, 1):
                return Outcome("fmt", time.perf_counter() - start, f"compile accepts, fmt exits {fstatus}: {ferr[-300:]}")
            _fmt_keeps_plan(path, out_dir)
            return Outcome("ok", time.perf_counter() - start)
        if fstatus not in (0, 1, 2):
            return Outcome("fmt", time.perf_counter() - start, f"fmt exits {fstatus}")
        # fmt and compile read and parse alike: fmt refuses a file exactly when compile
        # reports a syntax or reading error inside it.
        syntax = _syntax_errors_in(out, path)
        if syntax != (fstatus == 2):
            return Outcome("fmt", time.perf_counter() - start, f"compile {'reports' if syntax else 'has no'} syntax errors in the file, fmt exits {fstatus}: {ferr[-300:]}")
        return Outcome("diagnostics", time.perf_counter() - start)
    except Hang:
        return Outcome("hang", time.perf_counter() - start)
    except FmtMismatch as e:
        return Outcome("fmt", time.perf_counter() - start, str(e))
    except BaseException as e:  # noqa: BLE001 - this is what the fuzzer is looking for
        import traceback

        return Outcome("exception", time.perf_counter() - start, "".join(traceback.format_exception(e))[-1500:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _syntax_errors_in(report: str, path: str) -> bool:
    """Whether the compile report has an E001 inside ``path``, or an E010 saying the file
    itself cannot be read."""
    diags = json.loads(report)["diagnostics"]
    for d in diags:
        s = d["span"]
        if d["code"] == "E001" and s and _same(s["file"], path):
            return True
        if d["code"] == "E010" and s is None and os.path.basename(path) in d["message"]:
            return True
    return False


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class FmtMismatch(Exception):
    pass


def _fmt_keeps_plan(path: str, out_dir: str) -> None:
    from xlspec.api import compile_file
    from xlspec.diagnostics import Diagnostics
    from xlspec.fmt import format_source
    from xlspec.source import read_source

    text = read_source(path).text
    once = format_source(text, path, Diagnostics())
    if once is None:
        raise FmtMismatch("compile accepts the file, fmt reports errors")
    twice = format_source(once, path, Diagnostics())
    if twice != once:
        raise FmtMismatch("formatting twice changes the text again")
    before = compile_file(path, out_dir)
    formatted = path[:-4] + "_fmt.xls"
    with open(formatted, "w", encoding="utf-8", newline="\n") as f:
        f.write(once)
    try:
        after = compile_file(formatted, out_dir)
    finally:
        os.unlink(formatted)
    if before.data is None or after.data is None:
        raise FmtMismatch("the formatted spec does not compile")
    a, b = dict(before.data), dict(after.data)
    for d in (a, b):
        d.pop("spec", None)
        d.pop("sources", None)
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        raise FmtMismatch("formatting changes the plan")


def run(n: int, seed: int, workspace: str, limit_s: float = 10.0, slow_s: float = 2.0, progress=None) -> Tally:
    """Run ``n`` inputs; deterministic for a given ``seed``."""
    ctx = prepare(workspace)
    rng = random.Random(seed)
    names = list(MUTATIONS)
    weights = [MUTATIONS[k][1] for k in names]
    all_seeds = seeds(workspace)
    out_dir = os.path.join(workspace, "build")
    tally = Tally()
    for i in range(n):
        seed_path = rng.choice(all_seeds)
        with open(os.path.join(workspace, seed_path), "rb") as f:
            data = f.read()
        chosen = rng.choices(names, weights, k=rng.choice([1, 1, 2]))
        for name in chosen:
            data = MUTATIONS[name][0](rng, data, ctx)
        target = os.path.join(workspace, os.path.dirname(seed_path), "_fuzz.xls")
        with open(target, "wb") as f:
            f.write(data)
        outcome = check_one(target, out_dir, limit_s)
        label = "+".join(chosen)
        tally.counts[outcome.kind] += 1
        tally.mutations[label] += 1
        tally.slowest = max(tally.slowest, outcome.seconds)
        if outcome.seconds > slow_s:
            tally.slow += 1
            tally.slow_labels[label] += 1
        if outcome.kind not in ("ok", "diagnostics"):
            keep = os.path.join(workspace, "failures", f"{i:05d}-{outcome.kind}.xls")
            os.makedirs(os.path.dirname(keep), exist_ok=True)
            shutil.copy(target, keep)
            tally.failures.append((i, label, seed_path, outcome.kind, outcome.detail, keep))
        if progress:
            progress(i, outcome)
    return tally
