"""Hostile input against the real ingest process: never a 500, nothing vanishes, memory stays flat.

Requests are written byte for byte on raw sockets (an HTTP client would tidy up exactly
the malformations worth sending): broken percent-encoding, invalid UTF-8, huge and
repeated parameters, NaN/1e309/negative amounts, unknown currencies, CR/LF in values,
deeply nested and malformed JSON, oversized bodies with and without Content-Length,
unknown content types, and senders that stop sending halfway through a body.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from postbacks.settings import Settings
from postbacks.topics import Topics
from schemas import POSTBACK_RAW, POSTBACK_REJECTED
from tests.helpers import IngestProcess, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.faults]

REQUESTS = 3000
AMOUNTS = ["NaN", "nan", "Infinity", "-inf", "1e309", "-1e309", "-5", "0", "1.5", "١٢", "0x1F", "1_000", ""]
CURRENCIES = ["USD", "eur", "ZZZ", "", "U$D", "EURO", "€"]
JUNK = ["%", "%z", "%zz", "%ff%fe", "%C3%28", "%00", "%0d%0aX-Injected:%201", "a%20b", "+", "&&", "=="]


def hostile_request(rng: random.Random, token: str) -> bytes:
    """One request, GET or POST, with a few hostile traits mixed in."""
    params = [f"clickid=c{rng.randrange(10**6)}", f"token={token}"]
    for _ in range(rng.randrange(6)):
        trait = rng.randrange(9)
        if trait == 0:
            params.append(f"payout={rng.choice(AMOUNTS)}")
        elif trait == 1:
            params.append(f"currency={rng.choice(CURRENCIES)}")
        elif trait == 2:
            params.append(rng.choice(JUNK) + "=" + rng.choice(JUNK))
        elif trait == 3:
            params.append("sub1=" + "x" * rng.choice((1000, 6000)))  # huge value
        elif trait == 4:
            params += [f"clickid=dup{i}" for i in range(rng.randrange(2, 5))]  # repeated
        elif trait == 5:
            params.append("event_value=" + "%5B" * rng.randrange(1, 300))  # nested (and broken) JSON
        elif trait == 6:
            params += [f"p{i}=v" for i in range(rng.choice((10, 250)))]  # parameter flood
        elif trait == 7:
            params.append(f"event_time={rng.choice(['-1', '99999999999999', 'yesterday', '1e12', ''])}")
        else:
            params.append("status=" + rng.choice(["approved", "APPROVED", "???", "%0aapproved"]))
    rng.shuffle(params)
    query = "&".join(params)
    if rng.random() < 0.6:
        return f"GET /postback?{query} HTTP/1.1\r\nHost: i\r\nConnection: close\r\n\r\n".encode()
    kind = rng.choice(["form", "json", "nested", "bad-json", "binary", "huge", "huge-undeclared", "xml"])
    content_type = "application/x-www-form-urlencoded"
    declared = True
    if kind == "form":
        body = query.encode()
    elif kind == "json":
        body = json.dumps({"clickid": "j1", "payout": rng.choice(AMOUNTS), "token": token}).encode()
        content_type = "application/json"
    elif kind == "nested":
        depth = rng.choice((50, 5000))
        body = ("[" * depth + "]" * depth).encode()
        content_type = "application/json"
    elif kind == "bad-json":
        body = rng.choice([b"{", b'{"a": NaN}', b'{"payout": 1e309}', b"\xff\xfe{}", b"null", b'"x"'])
        content_type = "application/json"
    elif kind == "binary":
        body = rng.randbytes(rng.randrange(1, 512))
    elif kind in ("huge", "huge-undeclared"):
        body = b"a=" + b"x" * 200_000
        declared = kind == "huge"
    else:
        body, content_type = b"<postback/>", "application/xml"
    head = (
        f"POST /postback?token={token} HTTP/1.1\r\nHost: i\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\n"
    )
    if declared:
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192]) for i in range(0, len(body), 8192)
    )
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


async def exchange(host: str, port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        return 0, b""  # the server may close on an oversized body before reading it all
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: i\r\nConnection: close\r\n\r\n".encode()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def fire(host: str, port: int, requests: list[bytes], concurrency: int = 16) -> list[tuple[int, bytes]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(raw: bytes) -> tuple[int, bytes]:
        async with gate:
            return await exchange(host, port, raw)

    return await asyncio.gather(*(one(r) for r in requests))


def test_no_hostile_request_gets_a_500_and_every_one_is_kept(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with IngestProcess.start(pipeline_settings, tmp_path) as ingest:
        url = urlsplit(ingest.base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        warmup = asyncio.run(fire(host, port, [hostile_request(rng, ingest.token) for _ in range(300)]))
        before = rss_kib(ingest.process.pid)
        results = asyncio.run(fire(host, port, [hostile_request(rng, ingest.token) for _ in range(REQUESTS)]))
        after = rss_kib(ingest.process.pid)
        assert ingest.process.poll() is None, "ingest died"
    statuses = [s for s, _ in warmup + results]
    assert not [s for s in statuses if s >= 500], f"seed={seed}: {sorted(set(statuses))}"
    ours = [json.loads(body) for status, body in warmup + results if status and body.startswith(b"{")]
    accepted = sum(1 for b in ours if b["status"] == "accepted")
    refused = [b for b in ours if b["status"] == "rejected"]
    assert all(b["reason"] for b in refused)
    topics = Topics(pipeline_settings.topic_prefix)
    raw = read_topic(pipeline_settings, topics.postbacks_raw, POSTBACK_RAW, expect=accepted, timeout_s=30)
    kept = read_topic(
        pipeline_settings, topics.postbacks_rejected, POSTBACK_REJECTED, expect=len(refused), timeout_s=30
    )
    assert (len(raw), len(kept)) == (accepted, len(refused)), f"seed={seed}"
    assert {r["request_id"] for r in kept} == {b["request_id"] for b in refused}
    assert accepted > 100 and len(refused) > 100  # the mix exercised both paths
    assert after - before < 64 * 1024, f"RSS grew {after - before} KiB over {REQUESTS} hostile requests"
    print(
        f"seed={seed} requests={len(statuses)} accepted={accepted} refused={len(refused)} "
        f"statuses={sorted(set(statuses))} rss_growth_kib={after - before}"
    )


def test_a_sender_that_stops_mid_body_gets_408_and_others_are_served(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    with IngestProcess.start(pipeline_settings, tmp_path, INGEST_BODY_TIMEOUT_S="1") as ingest:
        url = urlsplit(ingest.base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80

        async def scenario() -> tuple[list[tuple[int, bytes]], list[int]]:
            slow = []
            for _ in range(20):  # slowloris: a declared body that never arrives
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(
                    f"POST /postback?token={ingest.token} HTTP/1.1\r\nHost: i\r\nContent-Type: "
                    "application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nclickid=s".encode()
                )
                await writer.drain()
                slow.append((reader, writer))
            started = time.monotonic()
            served = await fire(
                host,
                port,
                [get(f"/postback?clickid=ok{i}&token={ingest.token}") for i in range(50)],
            )
            assert time.monotonic() - started < 30
            answers = []
            for reader, writer in slow:
                line = await asyncio.wait_for(reader.readline(), 30)
                answers.append(int(line.split()[1]))
                writer.close()
            return served, answers

        served, answers = asyncio.run(scenario())
    assert [s for s, _ in served] == [200] * 50
    assert answers == [408] * 20
    topics = Topics(pipeline_settings.topic_prefix)
    kept = read_topic(
        pipeline_settings, topics.postbacks_rejected, POSTBACK_REJECTED, expect=20, timeout_s=15
    )
    assert [r["reason"] for r in kept] == ["request_timeout"] * 20
