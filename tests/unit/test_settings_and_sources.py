"""Settings from the environment, the sources file and the catalog fail fast with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.auth import HmacAuth, NoAuth, TokenAuth
from ingest.sources import ConfigError, load_sources, parse_sources, write_starter_sources
from postbacks.catalog import CatalogError, parse_catalog
from postbacks.settings import Settings, SettingsError, env_table


def test_settings_read_typed_values_from_env() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "INGEST_PORT": "9000",
            "PUBLISH_TIMEOUT_S": "2.5",
            "POSTBACKS_DATA_DIR": "/tmp/x",
        }
    )
    assert (s.kafka_bootstrap_servers, s.ingest_port, s.publish_timeout_s) == ("k:9092", 9000, 2.5)
    assert s.effective_clickhouse_dsn == "chdb:///tmp/x/clickhouse"
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"INGEST_PORT": "http"}, "INGEST_PORT"),
        ({"INGEST_PORT": "70000"}, "INGEST_PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_sources_parse_each_auth_kind() -> None:
    registry = parse_sources(
        {
            "trusted_proxies": ["192.0.2.0/24"],
            "sources": {
                "af": {
                    "auth": "token",
                    "tokens": ["t" * 20],
                    "token_param": "security_token",
                    "preset": "appsflyer",
                },
                "kt": {
                    "auth": "hmac",
                    "hmac_secrets": ["s" * 20],
                    "allow_ips": ["10.0.0.0/8"],
                    "preset": "keitaro",
                },
                "lan": {"auth": "none"},
            },
        }
    )
    assert isinstance(registry.sources["af"].auth, TokenAuth)
    assert isinstance(registry.sources["kt"].auth, HmacAuth)
    assert isinstance(registry.sources["lan"].auth, NoAuth)
    # Every source drops every source's token parameter, so a secret never lands in `extra`.
    assert "security_token" in registry.sources["lan"].rules.secret_params
    assert registry.get(None) is None  # no source named "default"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"auth": "token"}, "tokens"),
        ({"auth": "token", "tokens": ["short"]}, "at least 16"),
        ({"auth": "hmac"}, "hmac_secrets"),
        ({"auth": "basic"}, "auth must be"),
        ({}, "auth must be"),
        ({"auth": "none", "preset": "nope"}, "unknown alias preset"),
        ({"auth": "none", "aliases": {"x": "no_such_field"}}, "unknown fields"),
        ({"auth": "none", "allow_ips": ["300.1.1.1/8"]}, "allow_ips"),
        ({"auth": "none", "dedup_policy": "Never!"}, "dedup_policy"),
        ({"auth": "none", "dedup_policy": 7}, "dedup_policy"),
    ],
)
def test_bad_source_config_fails_with_its_name(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_sources({"sources": {"acme": spec}})
    assert "sources.acme" in str(caught.value)


def test_a_plugin_dedup_policy_is_accepted_and_the_stream_refuses_an_unregistered_one() -> None:
    """The ingest cannot know the stream's plugins (services never import each other): it takes the
    name, and the stream, which has the registry, refuses to start on a name nobody registered."""
    from stream.decide import Decider
    from stream.registry import Registry

    sources = parse_sources({"sources": {"acme": {"auth": "none", "dedup_policy": "by_order_ref"}}})
    assert sources.sources["acme"].dedup_policy == "by_order_ref"
    plugins = Registry()
    with pytest.raises(KeyError, match="unknown dedup policy 'by_order_ref'"):
        Decider(Settings(), source_policies={"acme": "by_order_ref"}, plugins=plugins)
    plugins.dedup_policy("by_order_ref")(lambda postback, click: "key")
    Decider(Settings(), source_policies={"acme": "by_order_ref"}, plugins=plugins)


def test_starter_sources_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    token = write_starter_sources(path)
    assert path.stat().st_mode & 0o077 == 0
    source = load_sources(path).get(None)
    assert source is not None and isinstance(source.auth, TokenAuth) and source.auth.tokens == (token,)


def test_catalog_urls_are_checked_and_encoded() -> None:
    catalog = parse_catalog({"offers": {"o1": {"url": "https://adv.example/l?c={clickid}&s={sub1}"}}})
    url = catalog.offers["o1"].landing_url({"clickid": "a/b", "sub1": "x y&z"})
    assert url == "https://adv.example/l?c=a%2Fb&s=x%20y%26z"
    with pytest.raises(CatalogError, match="unknown macros"):
        parse_catalog({"offers": {"o2": {"url": "https://adv.example/?c={click}"}}})


def test_every_setting_is_documented() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    settings = page.split("## Settings", 1)[1].split("\n## ", 1)[0]
    missing = [name for name, _, _ in env_table() if f"`{name}`" not in settings]
    assert not missing, f"docs/operations.md 'Settings' lacks {missing}"
