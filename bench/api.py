"""Throughput of the openai engine at concurrency 1, 8 and 32.

Two servers on 127.0.0.1:

- ``vllm``: vLLM's OpenAI-compatible server with the embedded model (``python -m
  xlspec.runtime.serve``, started and stopped here): what a local server gives, bound by the
  model on this machine;
- ``stub``: a server with no model behind it (tests/support/api_server.py, in a process of
  its own) that answers every request after ``--stub-delay`` seconds, as a remote API with a
  fixed latency would: what the engine itself sustains (HTTP, JSON, its concurrency).

Each run sends ``--requests`` distinct chat prompts (``generate``, ``--max-tokens`` tokens,
greedy) through the engine, after a few requests to warm up, and prints requests/s, output
tokens/s and the median time of a request's HTTP calls (waiting for a free slot excluded).

    python bench/api.py [--servers vllm,stub] [--requests 96] [--concurrency 1,8,32]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

QUESTIONS = ["What is the capital of {}?", "Name a famous dish from {}.", "Which language is spoken in {}?", "Describe the flag of {}."]
COUNTRIES = ["France", "Japan", "Brazil", "Kenya", "Canada", "India", "Egypt", "Norway", "Peru", "Vietnam", "Italy", "Mexico"]


def prompts(n: int, salt: str) -> list[str]:
    return [f"{QUESTIONS[i % len(QUESTIONS)].format(COUNTRIES[i // len(QUESTIONS) % len(COUNTRIES)])} ({salt}{i})" for i in range(n)]


def measure(url: str, model: str, concurrency: int, n: int, max_tokens: int) -> dict:
    from xlspec.lower import EngineRequest
    from xlspec.runtime.engines import ENGINES, EngineConfig
    from xlspec.spec import ModelSpec

    spec = ModelSpec(engine="openai", source=model, base_url=url, concurrency=concurrency, timeout=600)
    engine = ENGINES["openai"].load(EngineConfig(name="api", model=spec))
    warm = [EngineRequest(f"w{i}", p, "generate", max_tokens=max_tokens) for i, p in enumerate(prompts(min(4, concurrency), f"warm{concurrency}-"))]
    engine.run(warm)
    batch = [EngineRequest(f"r{i}", p, "generate", max_tokens=max_tokens) for i, p in enumerate(prompts(n, f"c{concurrency}-"))]
    start = time.perf_counter()
    results = engine.run(batch)
    wall = time.perf_counter() - start
    errors = [r for r in results if r.error]
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0].error}")
    return {
        "requests_s": n / wall,
        "output_tok_s": sum(r.output_tokens for r in results) / wall,
        "p50_ms": statistics.median(r.latency_ms for r in results),
        "wall_s": wall,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_vllm() -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = open(os.path.join(ROOT, "bench", ".api-server.log"), "w")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "xlspec.runtime.serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited; see {log.name}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return proc, url, time.perf_counter() - started
        except OSError:
            time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="vllm,stub")
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--stub-delay", type=float, default=0.2, help="seconds the stub server takes per request")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"{os.cpu_count()} CPUs; {args.requests} requests per level, max_tokens={args.max_tokens}")
    print("| server | concurrency | requests/s | output tok/s | median latency | vs concurrency 1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for server in args.servers.split(","):
        if server == "vllm":
            proc, url, ready = start_vllm()
            print(f"(vLLM server ready in {ready:.0f} s)", file=sys.stderr)
            model = "smollm2-135m-instruct"
        else:  # in a process of its own, so it does not share the engine's interpreter
            proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "support", "api_server.py"), "--delay", str(args.stub_delay)],
                                    stdout=subprocess.PIPE, text=True, start_new_session=True)
            url, model = proc.stdout.readline().strip(), "stub"
        try:
            base = None
            for c in levels:
                m = measure(url, model, c, args.requests, args.max_tokens)
                base = base or m["requests_s"]
                name = server if server == "vllm" else f"stub ({args.stub_delay * 1000:.0f} ms a request)"
                print(f"| {name} | {c} | {m['requests_s']:.1f} | {m['output_tok_s']:.0f} | {m['p50_ms']:.0f} ms | {m['requests_s'] / base:.2f}x |", flush=True)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(30)


if __name__ == "__main__":
    main()
