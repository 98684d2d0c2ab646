"""docs/stream.md "Extending the stream", run: the page's plugin, loaded as STREAM_PLUGINS loads it.

The plugin is not copied here: the test takes the page's Python block (the one starting with
`# mycompany/postback_rules.py`), writes it as that module, loads it with `load_plugins` and decides
clicks and postbacks with it, so the worked example cannot drift from what the stream runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postbacks.settings import Settings
from stream.decide import CONVERSION_KIND, DUPLICATE_KIND, REJECTED_KIND, Decider
from stream.registry import load_plugins, registry
from tests.unit.stream.conftest import click, postback
from tests.unit.stream.test_decide import decoded

PAGE = Path(__file__).resolve().parents[3] / "docs" / "stream.md"
MODULE = "mycompany.postback_rules"


def plugin_source() -> str:
    """The ```python block of the page that starts with the plugin's file name."""
    blocks = PAGE.read_text().split("```python\n")[1:]
    [source] = [b.split("\n```")[0] for b in blocks if b.startswith(f"# {MODULE.replace('.', '/')}.py")]
    return source


@pytest.fixture
def with_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The page's module importable and loaded; the registry and sys.modules restored afterwards."""
    package = tmp_path / "mycompany"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "postback_rules.py").write_text(plugin_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    for table in ("dedup_policies", "fraud_rules", "enrichers"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    assert MODULE in load_plugins(MODULE)
    yield
    for name in (MODULE, "mycompany"):
        sys.modules.pop(name, None)


def decide(decider: Decider, clicked: dict[str, Any], *postbacks: dict[str, Any]) -> list[tuple[str, Any]]:
    state, _ = decider.on_click(None, clicked)
    assert state is not None
    out: list[tuple[str, Any]] = []
    for offset, record in enumerate(postbacks, start=1):
        out += [(e.kind, decoded(e)) for e in decider.on_postback(state, record, offset=offset).emits]
    return out


def test_the_pages_plugin_registers_a_rule_an_enrichment_and_a_policy(with_plugin: None) -> None:
    assert {"datacenter_ip"} <= registry.fraud_rules.keys()
    assert {"publisher_tier"} <= registry.enrichers.keys()
    assert {"per_order"} <= registry.dedup_policies.keys()


def test_the_fraud_rule_refuses_a_click_from_a_hosting_range(with_plugin: None) -> None:
    decider = Decider(Settings())
    [(kind, refusal)] = decide(decider, click("c-dc", ip="203.0.113.7"), postback("c-dc"))
    assert (kind, refusal["reason"]) == (REJECTED_KIND, "datacenter_ip")
    [(kind, _)] = decide(decider, click("c-ok"), postback("c-ok"))
    assert kind == CONVERSION_KIND


def test_the_enrichment_tags_the_publisher(with_plugin: None) -> None:
    decider = Decider(Settings())
    [(_, vip)] = decide(decider, click("c-vip", publisher_id="vip-7"), postback("c-vip"))
    [(_, other)] = decide(decider, click("c-std"), postback("c-std"))
    assert vip["enrichment"]["publisher_tier"] == "gold"
    assert other["enrichment"]["publisher_tier"] == "standard"


def test_the_policy_counts_one_conversion_per_order(with_plugin: None) -> None:
    decider = Decider(Settings(), source_policies={"shop": "per_order"})

    def order(txid: str) -> dict[str, Any]:
        fields = {"source": "shop", "event_name": "purchase", "install_time": None, "transaction_id": txid}
        return postback("c-shop", **fields)

    outcomes = decide(decider, click("c-shop"), order("A-1"), order("A-2"), order("A-1"))
    assert [kind for kind, _ in outcomes] == [CONVERSION_KIND, CONVERSION_KIND, DUPLICATE_KIND]
    assert outcomes[2][1]["reason"] == "same_key"
    assert outcomes[0][1]["conversion_id"] != outcomes[1][1]["conversion_id"]
