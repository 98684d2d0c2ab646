"""Which ASGI server should ingest run on? Measure, in one run, on this machine.

For each server (granian, uvicorn+httptools+uvloop) it serves (a) the bare baseline
handler and (b) the real ingest app publishing to the embedded broker with acks=all,
and drives each with `wrk` (a separate C process, so the load generator is not the
bottleneck). Prints req/s and latency, and the ratio of (b) to (a).

    python -m bench.http_servers [--seconds 8] [--connections 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ingest.sources import write_starter_sources
from postbacks.local.broker import EmbeddedBroker, free_port
from postbacks.settings import Settings
from postbacks.topics import ensure_topics

SERVERS = {
    "granian": lambda target, factory, port: [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--no-ws",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--factory"] if factory else []),
        target,
    ],
    "uvicorn": lambda target, factory, port: [
        sys.executable,
        "-m",
        "uvicorn",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--factory"] if factory else []),
        target,
    ],
}


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0,
    }


def wait_up(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered 200")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(Path(tmp) / "kafka") as broker:
        sources = Path(tmp) / "sources.toml"
        token = write_starter_sources(sources)
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            sources_file=sources,
            data_dir=Path(tmp),
            log_level="WARNING",
        )
        asyncio.run(ensure_topics(settings))
        env = {**os.environ, **settings.to_env()}
        query = f"clickid=bench123&payout=1.5&currency=EUR&event_name=purchase&token={token}"
        for server, command in SERVERS.items():
            results[server] = {}
            for label, target, factory, path in (
                ("bare", "bench.bare_app:app", False, "/"),
                ("ingest", "ingest.app:create_app", True, "/postback"),
            ):
                port = free_port()
                proc = subprocess.Popen(
                    command(target, factory, port),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    wait_up(f"http://127.0.0.1:{port}{'/healthz' if label == 'ingest' else '/'}")
                    url = f"http://127.0.0.1:{port}{path}?{query}"
                    wrk(url, 2, args.connections)  # warm-up
                    results[server][label] = wrk(url, args.seconds, args.connections)
                finally:
                    proc.terminate()
                    proc.wait(15)
                r = results[server][label]
                print(
                    f"{server:8} {label:7} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                    f"p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non_2xx']:.0f}",
                    flush=True,
                )
            ratio = results[server]["ingest"]["rps"] / results[server]["bare"]["rps"]
            print(f"{server:8} ingest/bare = {ratio:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
