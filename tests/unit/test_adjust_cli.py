"""`postbacks adjust`: the click looked up, the token chosen, one request with an adjustment id."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from commands.adjust import AdjustError, Adjustment, admin_token, send
from commands.cli import build_parser

CID = "0123456789abcdef0123456789abcdef"


def api(seen: list[httpx.Request]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"status": "accepted", "request_id": "r1"})

    return httpx.Client(transport=httpx.MockTransport(answer), base_url="http://ingest")


def clickhouse(rows: list[list[Any]]) -> Any:
    asked: list[str] = []

    def query(sql: str) -> tuple[list[str], list[list[Any]]]:
        asked.append(sql)
        return ["click_id"], rows

    query.asked = asked  # type: ignore[attr-defined]
    return query


def test_the_click_is_looked_up_and_a_fresh_adjustment_id_sent() -> None:
    seen: list[httpx.Request] = []
    query = clickhouse([["clk-9"]])
    status, answer = send(
        api(seen), Adjustment(CID, "payout", "repriced", payout="1.5", currency="EUR"), "tok", query
    )
    [request] = seen
    body = json.loads(request.content)
    assert status == 202 and request.url.path == f"/conversions/{CID}/status"
    assert request.headers["authorization"] == "Bearer tok"
    assert body["click_id"] == "clk-9" and (body["payout"], body["currency"]) == ("1.5", "EUR")
    assert len(body["adjustment_id"]) == 32 and answer["adjustment_id"] == body["adjustment_id"]
    assert CID in query.asked[0]


def test_a_given_click_and_id_are_sent_as_they_are_and_bad_ids_never_reach_sql() -> None:
    seen: list[httpx.Request] = []
    query = clickhouse([])
    send(api(seen), Adjustment(CID, "reject", "fraud", "adj-7", "clk-1"), "tok", query)
    assert json.loads(seen[0].content)["adjustment_id"] == "adj-7" and query.asked == []
    with pytest.raises(AdjustError, match="hex"):
        send(api(seen), Adjustment("x' OR 1=1 --", "reject", "fraud"), "tok", query)
    with pytest.raises(AdjustError, match="no conversion"):
        send(api(seen), Adjustment(CID, "reject", "fraud"), "tok", query)


def test_admin_token_choice() -> None:
    assert admin_token({"alice": "a" * 16}, None) == "a" * 16
    assert admin_token({"alice": "a" * 16, "bob": "b" * 16}, "bob") == "b" * 16
    for tokens, name, match in [
        ({}, None, "no \\[admin"),
        ({"a": "x", "b": "y"}, None, "--admin"),
        ({"a": "x"}, "z", "no admin"),
    ]:
        with pytest.raises(AdjustError, match=match):
            admin_token(tokens, name)


def test_the_command_line() -> None:
    args = build_parser().parse_args(
        ["adjust", CID, "payout", "--payout", "2", "--reason", "why", "--id", "a1"]
    )
    assert (args.command, args.conversion_id, args.action, args.payout, args.id) == (
        "adjust",
        CID,
        "payout",
        "2",
        "a1",
    )
