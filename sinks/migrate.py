"""Versioned schema migrations, applied at start-up, each exactly once (safe to run on every start).

Files `sinks/migrations/NNNN_name.sql`; statements separated by `;`; `{raw_ttl_days}` is
filled from settings. Applied versions are recorded in `schema_migrations`.
"""

from __future__ import annotations

import logging
import re
from importlib.resources import files

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every shipped migration, in order."""
    found = []
    for entry in files("sinks").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found)


def statements(sql: str) -> list[str]:
    without_comments = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def migrate(client: Client, raw_ttl_days: int) -> list[int]:
    """Apply what is missing; returns the versions applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        for statement in statements(sql):
            client.command(statement.replace("{raw_ttl_days}", str(int(raw_ttl_days))))
        client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
        log.info("migration applied", extra={"version": version, "migration": name})
        applied.append(version)
    return applied
