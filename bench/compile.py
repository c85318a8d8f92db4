"""Compile-time benchmark: a spec of 40 languages x 6 framings x 8 models x 4 modes x
3 datasets (23,040 cells).  Prints the wall time and peak memory of `xlspec compile` as a
whole process (median of several runs), a per-phase breakdown, and `xlspec --help` time.

Targets: compile under 1 s and under 200 MB; `xlspec --help` under 0.3 s.

    python bench/compile.py [--runs 5] [--items 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LANGS = [
    "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "nb", "fi", "pl", "cs", "sk", "hu", "ro", "bg", "el", "ru", "uk",
    "tr", "ar", "fa", "he", "hi", "bn", "ur", "ta", "te", "th", "vi", "id", "ms", "tl", "sw", "yo", "am", "zh", "ja", "ko",
]


def write_spec(folder: str, items: int) -> str:
    data = os.path.join(folder, "data")
    os.makedirs(data, exist_ok=True)
    for d in range(3):
        with open(os.path.join(data, f"set{d}.jsonl"), "w", encoding="utf-8") as f:
            for i in range(items):
                rec = {
                    "id": f"d{d}-{i}",
                    "question": {lang: f"Question {i} of set {d} in {lang}?" for lang in LANGS},
                    "options": {lang: [f"option {k}" for k in range(4)] for lang in LANGS},
                    "answer": "ABCD"[i % 4],
                }
                f.write(json.dumps(rec) + "\n")
    lines = ['experiment bench "Compile benchmark"', f"languages all = [{', '.join(LANGS)}]"]
    for d in range(3):
        lines.append(f'dataset set{d} = jsonl("data/set{d}.jsonl") {{ id = id  question = question[lang]  options = options[lang]  gold = answer }}')
    for fr in range(6):
        body = "  ".join(f'{lang} = "Framing {fr} ({lang}): {{question}}\\n{{options}}\\nAnswer:"' for lang in LANGS)
        lines.append(f"framing f{fr} {{ {body} }}")
    for m in range(4):
        lines.append(f"mode m{m} {{ max_tokens = {8 * (m + 1)} }}")
    for m in range(8):
        lines.append(f'model model{m} = vllm("org/model-{m}") {{ tensor_parallel = 1 }}')
    lines.append(
        "study grid {\n"
        "  model = [" + ", ".join(f"model{m}" for m in range(8)) + "]\n"
        "  dataset = [set0, set1, set2]\n"
        "  language = all\n"
        "  framing = [" + ", ".join(f"f{i}" for i in range(6)) + "]\n"
        "  mode = [m0, m1, m2, m3]\n"
        "  answer = options + generate(parser = option_letter)\n"
        "  metrics = [accuracy, consistency(over = language), parity_gap(accuracy)]\n"
        "}"
    )
    path = os.path.join(folder, "bench.xls")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def timed(cmd: list[str], cwd: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(after, before) / 1024


def peak_rss(cmd: list[str], cwd: str) -> float:
    """Peak RSS in MiB of a command, measured by a fresh helper so earlier runs don't mask it."""
    code = (
        "import resource,subprocess,sys;"
        "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], cwd=cwd, check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def phases(spec: str, out_dir: str) -> dict[str, float]:
    """``xlspec.api.compile_file`` in this process, then its phases timed one by one."""
    from xlspec import plan as planmod
    from xlspec.api import compile_file
    from xlspec.check import check_file
    from xlspec.expand import expand

    t0 = time.perf_counter()
    compiled = compile_file(spec, out_dir)
    whole = time.perf_counter() - t0
    assert compiled.ok, "the generated spec does not compile"
    t0 = time.perf_counter()
    result = check_file(spec)
    t1 = time.perf_counter()
    plan = expand(result.spec, result.records, os.path.abspath(out_dir))
    t2 = time.perf_counter()
    planmod.write(plan, os.path.join(out_dir, "bench.plan.json"))
    t3 = time.perf_counter()
    return {"cells": len(plan["cells"]), "compile_file": whole, "parse+check": t1 - t0, "expand": t2 - t1, "write": t3 - t2}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--items", type=int, default=200, help="items per dataset")
    args = ap.parse_args()
    exe = os.path.join(os.path.dirname(sys.executable), "xlspec")
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_spec(tmp, args.items)
        compile_cmd = [exe, "compile", spec, "-o", os.path.join(tmp, "build")]
        subprocess.run(compile_cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)  # warm-up
        walls = [timed(compile_cmd, tmp)[0] for _ in range(args.runs)]
        rss = peak_rss(compile_cmd, tmp)
        helps = [timed([exe, "--help"], tmp)[0] for _ in range(args.runs)]
        ph = phases(spec, os.path.join(tmp, "build"))
        size = os.path.getsize(os.path.join(tmp, "build", "bench.plan.json"))
    print(f"cells: {ph['cells']:,}  (plan {size / 1e6:.1f} MB, {args.items} items per dataset)")
    print(f"xlspec compile: median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}, {args.runs} runs)  target < 1 s")
    print(f"peak memory: {rss:.0f} MiB  target < 200 MB")
    print(f"xlspec --help: median {statistics.median(helps):.3f} s  target < 0.3 s")
    print("in-process phases: " + ", ".join(f"{k} {v:.3f} s" for k, v in ph.items() if k != "cells"))


if __name__ == "__main__":
    main()
