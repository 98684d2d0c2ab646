"""The docs' commands, run: every fenced block marked runnable in README.md and docs/*.md.

A block whose info string is ```` ```sh run ```` is a bash script; ```` ```sql run ```` holds
ClickHouse statements (`;`-separated) sent through `postbacks sql`; ```` ```sql run rows ```` also
asserts that each statement returns a row (polled for up to a minute, as the pipeline is
asynchronous). The marker is the info string's second word, so GitHub still highlights `sh`/`sql`.
docs/contributing.md "Runnable docs" says how to write one.

The blocks run in reading order (README, then docs/ in the order of DOCS) against one fresh
`postbacks up` (`running_up`, its own stack: the shared `up_stack` counts exact rows), each in
`bash -euo pipefail` with `postbacks` on PATH and the working directory a scratch directory. What
a reader would fill in comes from the stack: the addresses `127.0.0.1:8080` (ingest), `:8123` (SQL
endpoint) and `:9101`-`:9103` (metrics) are rewritten to the ports `up` printed, and `TOKEN`,
`ADMIN_TOKEN`, `HMAC_SECRET`, `SQL_USER`, `SQL_PASSWORD` and `KAFKA_BOOTSTRAP_SERVERS` are set.
Variables a block assigns (`CLICK_ID=...`) are kept for the blocks after it, as in a reader's shell.

Left unmarked, because they cannot run here or run elsewhere:
- `make up`, `make test`, `make bench`: the suite itself (`make test` would recurse), a foreground
  stack, a 9-minute benchmark (`postbacks bench --quick` runs in tests/integration/test_bench.py);
- `postbacks demo`: its own stack and a day of traffic (tests/integration/test_demo.py runs it);
- `docker compose ...` and the ClickHouse cluster DDL (ReplicatedMergeTree, Distributed): no Docker
  engine and no ClickHouse cluster here (tests/unit/test_docker_compose.py checks the wiring);
- Python snippets for clickhouse-connect (tests/integration/test_sql_endpoint.py connects with it);
  the stream plugin example is run by tests/unit/stream/test_docs_plugin.py;
- TOML and text blocks: configuration and output, not commands.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.integration.conftest import UpStack, running_up

pytestmark = pytest.mark.integration

DOCS = [
    REPO / "README.md",
    *(
        REPO / "docs" / name
        for name in (
            "sending.md",
            "stream.md",
            "clickhouse.md",
            "outbound.md",
            "operations.md",
            "reliability.md",
            "benchmarks.md",
            "contributing.md",
        )
    ),
]
FENCE = re.compile(r"^```(\S*)(.*)$")
TOKEN = secrets.token_urlsafe(24)
ADMIN_TOKEN = secrets.token_urlsafe(24)
HMAC_SECRET = secrets.token_urlsafe(24)
SQL_USER, SQL_PASSWORD = "analyst", secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    rows: bool  # `sql run rows`: each statement must return a row
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    """The fenced blocks of `path` whose info string is `<lang> run` (or `sql run rows`)."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        lang, flags = fence.group(1), fence.group(2).split()
        if flags[:1] == ["run"]:
            assert lang in {"sh", "sql"}, f"{path}:{i + 1}: only sh and sql blocks run, not {lang!r}"
            found.append(Block(path, i + 1, lang, flags[1:] == ["rows"], "\n".join(lines[i + 1 : end])))
        i = end + 1
    return found


BLOCKS = [block for path in DOCS for block in runnable_blocks(path)]


def test_the_docs_have_runnable_blocks() -> None:
    """The marker is parsed: the README and the pages with commands carry runnable blocks."""
    pages = {block.path.name for block in BLOCKS}
    assert {"README.md", "sending.md", "clickhouse.md", "outbound.md", "operations.md"} <= pages


def sources_file(path: Path) -> Path:
    """The sources the docs' examples name: default, appsflyer (token), signed (HMAC), an admin, SQL."""
    path.write_text(
        'default_source = "default"\n\n'
        f'[sources.default]\nauth = "token"\ntokens = ["{TOKEN}"]\npreset = "generic"\n\n'
        f'[sources.appsflyer]\nauth = "token"\ntokens = ["{TOKEN}"]\npreset = "appsflyer"\n\n'
        f'[sources.signed]\nauth = "hmac"\nhmac_secrets = ["{HMAC_SECRET}"]\npreset = "generic"\n\n'
        f'[admin.tokens]\nops = "{ADMIN_TOKEN}"\n\n'
        f'[sql]\nuser = "{SQL_USER}"\npassword = "{SQL_PASSWORD}"\n'
    )
    path.chmod(0o600)
    return path


@dataclass
class Reader:
    """A reader's shell on the stack: environment, scratch directory, variables set so far."""

    stack: UpStack
    env: dict[str, str]
    cwd: Path
    state: Path

    def rewrite(self, text: str) -> str:
        text = text.replace("http://127.0.0.1:8080", self.stack.ingest.rstrip("/"))
        text = text.replace("http://127.0.0.1:8123", self.stack.url.rstrip("/"))
        for port, service in (("9101", "stream"), ("9102", "sink"), ("9103", "outbound")):
            text = text.replace(f"http://127.0.0.1:{port}/metrics", self.stack.metrics[service])
        return text

    def sh(self, script: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        wrapped = f'set -a\n. "{self.state}"\n{script}\nset +a\nexport -p > "{self.state}"\n'
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", wrapped],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def sql(self, statement: str) -> list[dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "commands.cli", "sql", statement, "--format", "json"],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{statement}\n{done.stdout}\n{done.stderr}"
        rows: list[dict[str, object]] = json.loads(done.stdout)
        return rows


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    tmp = tmp_path_factory.mktemp("docs")
    sources = sources_file(tmp / "sources.toml")
    with running_up(tmp, {"SOURCES_FILE": str(sources)}) as stack:
        kafka = re.search(r"^\s+kafka\s+(\S+)", stack.banner, re.MULTILINE)
        assert kafka, stack.banner
        env = dict(stack.env)
        env.update(
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
            KAFKA_BOOTSTRAP_SERVERS=kafka.group(1),
            TOKEN=TOKEN,
            ADMIN_TOKEN=ADMIN_TOKEN,
            HMAC_SECRET=HMAC_SECRET,
            SQL_USER=SQL_USER,
            SQL_PASSWORD=SQL_PASSWORD,
        )
        scratch = tmp / "reader"
        scratch.mkdir()
        state = tmp / "reader.env"
        state.write_text("")
        yield Reader(stack, env, scratch, state)


def statements(text: str) -> list[str]:
    """A block's statements: split at a `;` that ends a line (the docs' queries hold no such `;`)."""
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip()]


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_runs(reader: Reader, block: Block) -> None:
    text = reader.rewrite(block.text)
    if block.lang == "sh":
        done = reader.sh(text)
        assert done.returncode == 0, f"{block.name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return
    for statement in statements(text):
        rows = reader.sql(statement)
        deadline = time.monotonic() + 60
        while block.rows and not rows and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = reader.sql(statement)
        assert rows or not block.rows, f"{block.name}: no rows from\n{statement}"
