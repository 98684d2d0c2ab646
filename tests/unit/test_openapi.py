"""The ingest's OpenAPI document lists every refusal the code can raise, with the status it is sent with."""

from __future__ import annotations

import ast
from pathlib import Path

from ingest.openapi import ADMIN_REFUSALS, CLICK_REFUSALS, IMPRESSION_REFUSALS, POSTBACK_REFUSALS, spec

INGEST = Path(__file__).resolve().parents[2] / "ingest"


# The fields each module refuses as f"missing_{name}".
_REQUIRED = {
    "clicks.py": ("offer_id", "publisher_id"),
    "admin.py": ("adjustment_id", "click_id", "action", "reason"),
}


def _raised() -> set[tuple[str, int]]:
    """(reason, status) of every `Refusal(...)` in ingest/, read from the code itself."""
    found: set[tuple[str, int]] = set()
    for path in INGEST.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Refusal"):
                continue
            first = node.args[0]
            status = node.args[3].value if len(node.args) > 3 else 400  # type: ignore[attr-defined]
            if isinstance(first, ast.Constant):
                found.add((first.value, status))
            else:  # f"missing_{required}" over each route's required fields
                found |= {(f"missing_{name}", status) for name in _REQUIRED[path.name]}
    return found


def test_every_refusal_in_the_code_is_documented_with_its_status_and_no_other() -> None:
    documented = {
        (reason, status)
        for table in (POSTBACK_REFUSALS, CLICK_REFUSALS, IMPRESSION_REFUSALS, ADMIN_REFUSALS)
        for status, reasons in table.items()
        for reason in reasons
    }
    assert _raised() == documented


def test_each_refusal_status_lists_its_reasons_as_an_enum() -> None:
    document = spec("main")
    get = document["paths"]["/postback/{source}"]["get"]
    assert get["parameters"][0]["schema"]["example"] == "main"
    for status, reasons in POSTBACK_REFUSALS.items():
        schema = get["responses"][str(status)]["content"]["application/json"]["schema"]
        assert schema["allOf"][1]["properties"]["reason"]["enum"] == list(reasons)
    click = document["paths"]["/click"]["get"]["responses"]
    assert set(click) >= {"200", "302", "400", "404", "503"}
    impression = document["paths"]["/impression"]["get"]["responses"]
    assert "postbacks.rejected" in impression["400"]["description"]
    assert set(impression) >= {"200", "400", "404", "503"}
    assert set(document["paths"]) == {
        "/postback",
        "/postback/{source}",
        "/click",
        "/impression",
        "/conversions/{conversion_id}/status",
        "/healthz",
        "/metrics",
        "/openapi.json",
    }
