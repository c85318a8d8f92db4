"""A small OpenAI-compatible HTTP server on loopback that misbehaves in a set order.

Each request takes the next behaviour of ``script`` (then ``ok`` for ever):

- ``ok``: a well-formed answer (chat or completions);
- ``429``: Too Many Requests with ``Retry-After: <retry_after>``;
- ``500`` / ``503``: a server error;
- ``slow``: waits ``slow_s`` seconds before answering (longer than the client's timeout);
- ``drop``: closes the connection without a response;
- ``401``: an authentication error whose message quotes the key it was sent (as OpenAI's
  "Incorrect API key provided: sk-..." does).

A request whose prompt holds one of ``fail_when`` gets 500 every time, outside the script.

With ``key`` set, a request without ``Authorization: Bearer <key>`` gets 401.  Answers are
deterministic: a chat or completion answers ``"The answer is B."`` (or the text of
``reply(prompt)``); ``logprobs`` requests get top tokens A-D with fixed log-probabilities.
An ``echo`` completion returns the prompt's tokens (its words, each with the spaces before
it, after a ``<s>`` BOS token's text, as vLLM's server echoes a model that adds one) with
log-probabilities -0.5, -1.0, -1.5, ... ``delay_s`` slows every ``ok`` answer (to make a run last long enough to be killed).

Used by the API engine's tests and by ``bench/api.py`` (as a server with no model behind it,
to measure the engine's own overhead).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOP = [("B", -0.2), (" B", -2.5), ("A", -2.0), ("C", -3.0), ("D", -4.0)]


class FaultServer:
    def __init__(self, script: list[str] | None = None, key: str | None = None, retry_after: str = "1",
                 slow_s: float = 3.0, delay_s: float = 0.0, reply: Callable[[str], str] | None = None,
                 fail_when: tuple[str, ...] = ()):
        self.script = list(script or [])
        self.key, self.retry_after, self.slow_s, self.delay_s = key, retry_after, slow_s, delay_s
        self.reply = reply or (lambda prompt: "The answer is B.")
        self.fail_when = fail_when
        """Requests whose prompt holds one of these get 500 every time (set it to () to
        let them through)."""
        self.lock = threading.Lock()
        self.seen: Counter = Counter()
        """Behaviours served so far (``ok`` counts answers given)."""
        self.prompts: list[str] = []
        """The prompt of every ``ok`` answer, in order."""
        self.bodies: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def next_behaviour(self) -> str:
        with self.lock:
            behaviour = self.script.pop(0) if self.script else "ok"
            self.seen[behaviour] += 1
            return behaviour

    def start(self, port: int = 0) -> "FaultServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                # headers and body go out as two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add 40 ms to every answer
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if owner.key is not None and self.headers.get("authorization") != f"Bearer {owner.key}":
                    self._json(401, {"error": {"message": "missing or wrong API key"}})
                    return
                prompt = json.dumps(body, ensure_ascii=False)
                behaviour = "500" if any(m in prompt for m in owner.fail_when) else owner.next_behaviour()
                if behaviour == "500" and any(m in prompt for m in owner.fail_when):
                    with owner.lock:
                        owner.seen["500"] += 1
                if behaviour == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if behaviour == "429":
                    self._json(429, {"error": {"message": "rate limited"}}, {"Retry-After": owner.retry_after})
                    return
                if behaviour in ("500", "503"):
                    self._json(int(behaviour), {"error": {"message": "server error"}})
                    return
                if behaviour == "401":
                    self._json(401, {"error": {"message": f"Incorrect API key provided: {owner.key}"}})
                    return
                if behaviour == "slow":
                    time.sleep(owner.slow_s)
                elif owner.delay_s:
                    time.sleep(owner.delay_s)
                self._json(200, owner.answer(self.path, body))

            def _json(self, status: int, data: dict, headers: dict | None = None):
                raw = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def answer(self, path: str, body: dict) -> dict:
        chat = path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        with self.lock:
            self.prompts.append(prompt)
            self.bodies.append(body)
        text = self.reply(prompt)
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        if chat:
            choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if body.get("logprobs"):
                top = [{"token": t, "logprob": lp} for t, lp in TOP]
                choice["logprobs"] = {"content": [{"token": TOP[0][0], "logprob": TOP[0][1], "top_logprobs": top}]}
            return {"object": "chat.completion", "model": body.get("model"), "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        if body.get("echo"):  # the prompt's tokens (words, after a BOS token's text), then one more
            tokens = ["<s>"] + re.findall(r"\s*\S+", prompt) + ["."]
            offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
            values = [None] + [-0.5 * (i + 1) for i in range(len(tokens) - 1)]
            choice["text"] = "".join(tokens)
            choice["logprobs"] = {"tokens": tokens, "token_logprobs": values, "text_offset": offsets, "top_logprobs": None}
            usage["prompt_tokens"] = len(tokens) - 1
        elif body.get("logprobs") is not None:
            choice["logprobs"] = {"tokens": [TOP[0][0]], "token_logprobs": [TOP[0][1]], "text_offset": [0], "top_logprobs": [dict(TOP)]}
        return {"object": "text_completion", "model": body.get("model"), "choices": [choice], "usage": usage}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultServer":
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # a stub server in a process of its own (bench/api.py)
    import argparse

    ap = argparse.ArgumentParser(description="a stub OpenAI-compatible server on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds each answer takes")
    args = ap.parse_args()
    server = FaultServer(delay_s=args.delay).start(args.port)
    print(server.url, flush=True)
    threading.Event().wait()
