"""A local HTTP endpoint that records every request it gets: publishers' postback URLs, on this machine.

`postbacks demo` points its publishers here; the outbound tests start several, each
with its own answer (healthy, flaky, slow). Each request is recorded when it
arrives, before it is answered, so the counts are what the network delivered, even
for a request whose sender died waiting for the answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]  # lower-case names

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


# (request, how many times its Idempotency-Key has arrived, this one included) -> HTTP status.
Answer = Callable[[Received, int], int]


def always(status: int) -> Answer:
    return lambda request, seen: status


class Receiver:
    def __init__(self, answer: Answer | None = None, host: str = "127.0.0.1") -> None:
        self.answer = answer or always(200)
        self.received: list[Received] = []
        self._by_key: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Received(self.command, parts.path, parts.query, body, headers)
                status = receiver.answer(request, receiver._record(request))
                payload = b"ok" if status < 300 else b"no"
                try:
                    self.send_response(status)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up waiting (timeout, or it was killed)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)

    def _record(self, request: Received) -> int:
        with self._lock:
            self.received.append(request)
            key = request.idempotency_key or ""
            self._by_key[key] += 1
            return self._by_key[key]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def counts(self) -> Counter[str]:
        """Requests per Idempotency-Key (raw receive counts)."""
        with self._lock:
            return Counter(self._by_key)

    def by_path(self) -> dict[str, set[str]]:
        """Distinct Idempotency-Keys per path (the demo gives each publisher its own path)."""
        with self._lock:
            found: dict[str, set[str]] = {}
            for request in self.received:
                found.setdefault(request.path, set()).add(request.idempotency_key or "")
            return found
