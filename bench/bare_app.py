"""Baseline (a) for ingest: the same server, a handler that parses the query and answers 200, no Kafka."""

from __future__ import annotations

from urllib.parse import parse_qsl

from ingest.http import Receive, Scope, Send, send_json


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    params = parse_qsl(scope["query_string"].decode())
    await send_json(send, 200, {"status": "accepted", "n": len(params)})
