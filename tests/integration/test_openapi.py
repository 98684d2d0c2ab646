"""schemathesis (from the package registry) against the live ingest with its own /openapi.json: no 5xx,
every status, content type, header and body as the document says, 405 for methods it does not list."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from postbacks.settings import Settings
from tests.helpers import IngestProcess

pytestmark = pytest.mark.integration

SOURCES = """
default_source = "default"
trusted_proxies = []

[sources.default]
auth = "token"
tokens = ["a-token-of-twenty-chars"]
preset = "generic"

[sources.open]
auth = "none"
preset = "generic"
rate_limit_per_s = 1000
rate_limit_burst = 1000
"""

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "unsupported_method",
    )
)


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing(pipeline_settings: Settings, tmp_path: Path) -> None:
    sources = tmp_path / "my-sources.toml"
    sources.write_text(SOURCES)
    with IngestProcess.start(pipeline_settings, tmp_path, SOURCES_FILE=str(sources)) as ingest:
        document = httpx.get(f"{ingest.base_url}/openapi.json").json()
        assert document["openapi"].startswith("3.0")
        binary = shutil.which("schemathesis", path=str(Path(__file__).resolve().parents[2] / ".venv" / "bin"))
        binary = binary or shutil.which("schemathesis")
        assert binary, "schemathesis is in the test extra (make install)"
        config = tmp_path / "schemathesis.toml"
        config.write_text('[auth.openapi.token]\napi_key = "a-token-of-twenty-chars"\n')
        run = subprocess.run(
            [
                binary,
                "--config-file",
                str(config),
                "run",
                f"{ingest.base_url}/openapi.json",
                "--url",
                ingest.base_url,
                "--checks",
                CHECKS,
                "--max-examples",
                "40",
                "--seed",
                "18",
                "--workers",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=800,
        )
        report = run.stdout + run.stderr
        print(report[-1200:])  # shown with -s: warnings if any, operations, phases, test cases
        assert run.returncode == 0, report
        assert "No issues found" in report or "passed" in report, report
        # It did reach the accepting path, not only refusals.
        metrics = httpx.get(f"{ingest.base_url}/metrics").text
        assert 'postbacks_ingest_requests_total{route="postback",status="200"}' in metrics, report
        served = re.findall(r'requests_total\{route="(postback|click)",status="(\d+)"\} (\d+)', metrics)
        print(served)  # (route, status, requests), shown with -s
        assert served and not [status for _, status, _ in served if status.startswith("5")], served
