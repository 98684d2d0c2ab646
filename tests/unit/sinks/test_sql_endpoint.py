"""The SQL endpoint on the real engine (this process's chDB), reached by clickhouse-connect and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import pytest

from sinks import chhttp
from sinks.endpoint import QueryEndpoint, remote_query
from sinks.sql_access import Access

USER, PASSWORD = "analyst", "a-password-of-some-length"
AUTH = (USER, PASSWORD)


class Running:
    """A QueryEndpoint on its own event loop thread, as the sink runs it."""

    def __init__(self, chdb_path: Path, data_dir: Path, rate_limit: tuple[float, int] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.endpoint = QueryEndpoint(
            f"chdb://{chdb_path}", data_dir, Access(USER, PASSWORD), port=0, rate_limit=rate_limit
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.endpoint.start(), self.loop).result(30)
        self.url = f"http://127.0.0.1:{self.endpoint.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def served(chdb_path: Path, clickhouse_db: Any, tmp_path: Path) -> Iterator[tuple[Running, str]]:
    database = clickhouse_db.database
    clickhouse_db.command(
        "INSERT INTO clicks (click_id, offer_id, publisher_id, clicked_at) VALUES "
        "('c1', 'o1', 'p1', '2026-01-01 10:00:00'), ('c2', 'o1', 'p2', '2026-01-01 11:00:00')"
    )
    running = Running(chdb_path, tmp_path)
    try:
        yield running, database
    finally:
        running.stop()


def test_clickhouse_connect_queries_it_like_a_server(served: tuple[Running, str]) -> None:
    running, database = served
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=running.endpoint.port, username=USER, password=PASSWORD, database=database
    )
    assert client.server_version == running.endpoint.engine.version
    sql = "SELECT click_id, publisher_id FROM clicks WHERE offer_id = {offer:String} ORDER BY click_id"
    result = client.query(sql, parameters={"offer": "o1"})
    assert result.result_rows == [("c1", "p1"), ("c2", "p2")]
    assert client.query_df(sql, parameters={"offer": "o1"})["click_id"].tolist() == ["c1", "c2"]
    assert client.query_arrow(sql, parameters={"offer": "o1"}).column("publisher_id").to_pylist() == [
        "p1",
        "p2",
    ]
    assert client.command("SELECT count() FROM clicks") == 2
    with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError, match="READONLY"):
        client.command("TRUNCATE TABLE clicks")
    assert client.command("SELECT count() FROM clicks") == 2


def test_the_endpoint_file_names_it_for_report_and_sql(served: tuple[Running, str], tmp_path: Path) -> None:
    running, database = served
    path = tmp_path / "clickhouse.endpoint.json"
    info = json.loads(path.read_text())
    assert (info["url"], info["user"], info["password"]) == (running.url, USER, PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    columns, rows = remote_query(
        tmp_path, f"SELECT count() AS n, max(clicked_at) AS last FROM {database}.clicks"
    )
    assert (columns, rows) == (["n", "last"], [[2, "2026-01-01T11:00:00"]])


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("INSERT INTO clicks (click_id) VALUES ('x')", 164),
        ("ALTER TABLE clicks DELETE WHERE 1", 164),
        ("DROP TABLE clicks", 164),
        ("CREATE TABLE x (a UInt8) ENGINE = Memory", 164),
        ("SYSTEM SHUTDOWN", 164),
        ("KILL QUERY WHERE 1", 164),
        ("SET readonly = 0", 164),
        ("SELECT 1 SETTINGS readonly = 0", 164),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", 164),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", 164),
        ("SELECT * FROM remote('127.0.0.1:1', system.one)", 164),
        ("SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv', 'CSV', 'a String')", 164),
        ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", 164),
        ("SELECT * FROM mysql('127.0.0.1:1', 'd', 't', 'u', 'p')", 164),
        ("SELECT 1 INTO OUTFILE 'stolen.tsv'", 164),
        ("SELECT 1; DROP TABLE clicks", 62),
        ("SELECT * FROM no_such_table", 60),
        ("SELEC 1", 62),
    ],
)
def test_refusals_are_clickhouses_own(served: tuple[Running, str], sql: str, code: int) -> None:
    running, database = served
    response = httpx.post(running.url, params={"database": database}, content=sql, auth=AUTH)
    assert response.headers["X-ClickHouse-Exception-Code"] == str(code), response.text
    assert response.status_code == chhttp.status_for(code)
    assert response.text.startswith(f"Code: {code}. DB::Exception:") and "(version " in response.text
    assert (
        httpx.post(
            running.url, params={"database": database}, content="SELECT count() FROM clicks", auth=AUTH
        ).text
        == "2\n"
    )


def test_credentials(served: tuple[Running, str]) -> None:
    url = served[0].url + "/?query=SELECT%201"
    assert httpx.get(url, auth=AUTH).text == "1\n"
    assert httpx.get(url, headers={"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}).text == "1\n"
    assert httpx.get(url + f"&user={USER}&password={PASSWORD}").text == "1\n"
    for attempt in (
        httpx.get(url),
        httpx.get(url, auth=(USER, "wrong")),
        httpx.get(url, auth=("default", PASSWORD)),
    ):
        assert attempt.status_code == 401
        assert attempt.headers["X-ClickHouse-Exception-Code"] == "516"
        assert PASSWORD not in attempt.text


def test_rate_limit_per_address_then_per_user(chdb_path: Path, tmp_path: Path) -> None:
    """Wrong passwords use up their address's bucket, not the user's; each bucket refuses on its own."""
    running = Running(chdb_path, tmp_path, rate_limit=(0.01, 3))  # no refill within the test
    url = running.url + "/?query=SELECT%201"

    def get(address: str, auth: tuple[str, str]) -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=address)) as client:
            return client.get(url, auth=auth)

    try:
        assert [get("127.0.0.1", (USER, "wrong")).status_code for _ in range(3)] == [401] * 3
        guesser = get("127.0.0.1", AUTH)
        assert guesser.status_code == 429, guesser.text
        assert guesser.headers["X-ClickHouse-Exception-Code"] == "201"
        assert guesser.text.startswith("Code: 201. DB::Exception: Quota for address 127.0.0.1 has been")
        assert "(QUOTA_EXCEEDED) (version " in guesser.text
        assert 1 <= int(guesser.headers["Retry-After"]) <= 100
        assert [get("127.0.0.2", AUTH).text for _ in range(3)] == ["1\n"] * 3
        user = get("127.0.0.3", AUTH)  # a fresh address, but the user's bucket is empty
        assert (user.status_code, user.headers["X-ClickHouse-Exception-Code"]) == (429, "201")
        assert f"Quota for user `{USER}` has been exceeded" in user.text
        with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError, match="QUOTA_EXCEEDED"):
            clickhouse_connect.get_client(
                host="127.0.0.1", port=running.endpoint.port, username=USER, password=PASSWORD
            )
    finally:
        running.stop()


def test_health_and_root(served: tuple[Running, str]) -> None:
    url = served[0].url
    assert [httpx.get(url + p).text for p in ("/ping", "/replicas_status", "/")] == ["Ok.\n"] * 3


@pytest.mark.parametrize(
    ("fmt", "content_type", "body"),
    [
        ("TabSeparated", "text/tab-separated-values", b"c1\t1\n"),
        ("CSV", "text/csv", b'"c1",1\n'),
        ("JSONEachRow", "application/json", b'{"click_id":"c1","n":1}\n'),
        ("JSONCompactEachRow", "application/json", b'["c1", 1]\n'),
        ("RowBinaryWithNamesAndTypes", "application/octet-stream", None),
    ],
)
def test_formats_by_default_format(
    served: tuple[Running, str], fmt: str, content_type: str, body: bytes
) -> None:
    running, database = served
    sql = "SELECT click_id, toUInt8(1) AS n FROM clicks ORDER BY click_id LIMIT 1"
    response = httpx.post(
        running.url, params={"database": database, "default_format": fmt}, content=sql, auth=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-ClickHouse-Format"] == fmt
    assert response.headers["Content-Type"].startswith(content_type)
    if body is not None:
        assert response.content == body
    else:  # 2 columns, names, types, then the row
        assert response.content == b"\x02\x08click_id\x01n\x06String\x05UInt8" + b"\x02c1\x01"


def test_json_format_clause_settings_and_parameters(served: tuple[Running, str]) -> None:
    running, database = served
    params = {"database": database, "default_format": "CSV", "param_p": "p2"}
    sql = "SELECT click_id FROM clicks WHERE publisher_id = {p:String} FORMAT JSON"
    response = httpx.post(running.url, params=params, content=sql, auth=AUTH)
    assert response.headers["X-ClickHouse-Format"] == "JSON"
    assert response.json()["data"] == [{"click_id": "c2"}]
    limited = httpx.post(
        running.url,
        params={"database": database, "max_result_rows": "1", "result_overflow_mode": "throw"},
        content="SELECT click_id FROM clicks",
        auth=AUTH,
    )
    assert limited.headers["X-ClickHouse-Exception-Code"] == "396", limited.text  # TOO_MANY_ROWS_OR_BYTES
    unknown = httpx.post(running.url, params={"no_such_setting": "1"}, content="SELECT 1", auth=AUTH)
    assert (unknown.status_code, unknown.headers["X-ClickHouse-Exception-Code"]) == (400, "115")
    no_db = httpx.post(running.url, params={"database": "no_such_db"}, content="SELECT 1", auth=AUTH)
    assert (no_db.status_code, no_db.headers["X-ClickHouse-Exception-Code"]) == (404, "81")


@pytest.mark.parametrize("encoding", chhttp.ENCODINGS)
def test_compression_asked_for(served: tuple[Running, str], encoding: str) -> None:
    headers = {"Accept-Encoding": encoding}
    with (
        httpx.Client(auth=AUTH) as client,
        client.stream(
            "POST", served[0].url, content="SELECT number FROM numbers(1000)", headers=headers
        ) as r,
    ):
        assert r.headers["Content-Encoding"] == encoding
        raw = b"".join(r.iter_raw())  # as sent, not decoded by httpx
    assert chhttp.decode(raw, encoding) == b"".join(b"%d\n" % i for i in range(1000))


def test_native_compression_and_compressed_query(served: tuple[Running, str]) -> None:
    url = served[0].url
    response = httpx.post(
        url,
        params={"compress": "1", "decompress": "1"},
        content=chhttp.compress_native(b"SELECT number FROM numbers(3)"),
        auth=AUTH,
    )
    assert response.status_code == 200, response.text
    assert response.content[16] == 0x82
    assert struct.unpack_from("<I", response.content, 21)[0] == len(b"0\n1\n2\n")
    assert chhttp.decompress_native(response.content) == b"0\n1\n2\n"


def test_a_taken_port_gives_a_free_one() -> None:
    from sinks.endpoint import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sock = bind("127.0.0.1", port)
        try:
            assert sock.getsockname()[1] not in {port, 0}
        finally:
            sock.close()
