"""HTTP load generator for the benchmarks, run in a process of its own.

Keep-alive HTTP/1.1 GETs on raw asyncio protocols (uvloop): each request's bytes
are one formatted string, each response is framed by its Content-Length, and
nothing else is parsed, so one core of this process drives far more requests than
one core of a Python server answers. Its ceiling is reported in the same run: the
ingest stage drives a bare handler with it first (docs/benchmarks.md).

Two modes:
  closed loop  (default) every connection sends its next request when the answer
               to the last one arrives: the most the server sustains at that concurrency.
  open loop    (--rate R) requests are due at a fixed rate whatever the server does;
               latency counts from when a request was due, so a stalled server shows
               up as latency instead of as fewer requests (no coordinated omission).

    python -m bench.loadgen --port 8080 --path '/postback?clickid=c{k}&transaction_id=t{i}' \
        [--keys 1000] [--connections 32] [--seconds 10] [--warmup 2] [--rate 2000] [--acks acks.tsv]

Prints one JSON object: requests, ok, non_2xx, errors, rps (2xx per second over the
measured span), p50_ms, p99_ms, cpu (cores this process used while measuring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.measure import percentile

_REQUEST_ID = re.compile(rb'"request_id"\s*:\s*"([^"]+)"')


@dataclass
class Tally:
    measuring_from: float
    measuring_until: float
    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0
    ok: int = 0
    non_2xx: int = 0
    errors: int = 0
    acks: list[tuple[str, float]] | None = None  # (request id, wall-clock ack time) when asked for

    def record(self, due: float, now: float, status: int, body: bytes) -> None:
        if not self.measuring_from <= now <= self.measuring_until:
            return
        self.requests += 1
        if 200 <= status < 300:
            self.ok += 1
            self.latencies_ms.append((now - due) * 1000)
            if self.acks is not None:
                match = _REQUEST_ID.search(body)
                if match:
                    self.acks.append((match.group(1).decode(), time.time()))
        else:
            self.non_2xx += 1


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.busy, self.due = True, due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            if at < 0:
                raise RuntimeError("response without Content-Length: " + head[:200].decode(errors="replace"))
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end > 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(self.buffer[9:12])
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.busy = False
            self.generator.answered(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host: str = args.host
        self.port: int = args.port
        self.path: str = args.path
        self.keys: int = args.keys
        self.rate: float | None = args.rate
        self.connections: int = args.connections
        self.sent = 0
        self.idle: deque[Connection] = deque()
        self.open: list[Connection] = []
        self.running = True
        start = time.perf_counter()
        self.tally = Tally(start + args.warmup, start + args.warmup + args.seconds)
        if args.acks:
            self.tally.acks = []

    def request(self) -> bytes:
        i = self.sent
        self.sent += 1
        path = self.path.format(i=i, k=i % self.keys)
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: postbacks-bench\r\n\r\n".encode()

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: Connection(self), self.host, self.port)
        self.open.append(connection)
        return connection

    def answered(self, connection: Connection, status: int, body: bytes) -> None:
        now = time.perf_counter()
        self.tally.record(connection.due, now, status, body)
        if not self.running:
            return
        if self.rate is None:
            connection.send(self.request(), now)
        else:
            self.idle.append(connection)

    def lost(self, connection: Connection) -> None:
        if connection.busy:
            self.tally.errors += 1
        if connection in self.open:
            self.open.remove(connection)
        if connection in self.idle:
            self.idle.remove(connection)

    async def run(self) -> None:
        until = self.tally.measuring_until
        if self.rate is None:
            for connection in [await self.connect() for _ in range(self.connections)]:
                connection.send(self.request(), time.perf_counter())
            await asyncio.sleep(max(0.0, until - time.perf_counter()))
        else:
            await self._open_loop(self.rate, until)
        self.running = False

    async def _open_loop(self, rate: float, until: float) -> None:
        """Send what is due every millisecond; a request waits for a free connection, its clock running."""
        for _ in range(self.connections):
            self.idle.append(await self.connect())
        start = time.perf_counter()
        backlog: deque[float] = deque()
        issued = 0
        while (now := time.perf_counter()) < until:
            due_count = int((now - start) * rate) - issued
            for n in range(due_count):
                backlog.append(start + (issued + n) / rate)
            issued += due_count
            while backlog and self.idle:
                self.idle.popleft().send(self.request(), backlog.popleft())
            await asyncio.sleep(0.001)

    def summary(self, cpu_s: float, span_s: float) -> dict[str, Any]:
        t = self.tally
        return {
            "requests": t.requests,
            "ok": t.ok,
            "non_2xx": t.non_2xx,
            "errors": t.errors,
            "rps": t.ok / span_s,
            "p50_ms": percentile(t.latencies_ms, 50),
            "p99_ms": percentile(t.latencies_ms, 99),
            "cpu": cpu_s / span_s,
        }


async def _main(args: argparse.Namespace) -> tuple[dict[str, Any], list[tuple[str, float]] | None]:
    generator = Generator(args)
    cpu_at_start = None
    task = asyncio.create_task(generator.run())
    await asyncio.sleep(max(0.0, generator.tally.measuring_from - time.perf_counter()))
    cpu_at_start = time.process_time()
    await task
    cpu_s = time.process_time() - cpu_at_start
    await asyncio.sleep(0.5)  # answers to requests sent at the end of the span
    for connection in generator.open:
        if connection.transport is not None:
            connection.transport.close()
    return generator.summary(cpu_s, args.seconds), generator.tally.acks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="request target; {i} = request number, {k} = i %% keys")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    parser.add_argument("--acks", help="write 'request_id<TAB>ack time' of every 2xx measured")
    args = parser.parse_args(argv)
    try:
        import uvloop

        result, acks = uvloop.run(_main(args))
    except ImportError:
        result, acks = asyncio.run(_main(args))
    if args.acks and acks is not None:
        Path(args.acks).write_text("".join(f"{rid}\t{at:.6f}\n" for rid, at in acks))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
