"""The sources file: who sends postbacks, how they authenticate, what their macros mean.

TOML (read with the standard library). Every mistake (unknown preset, alias to an
unknown field, token auth with no token) fails at start-up with the source's name,
never at the first request. Example in docs/sending.md "Sources".
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.aliases import DEFAULT_EVENTS, STATUS_PRESETS, build_alias_map
from ingest.auth import Auth, HmacAuth, IPNetwork, NoAuth, TokenAuth
from ingest.parsing import NormaliseRules
from postbacks.conventions import ALWAYS_SECRET as ALWAYS_SECRET
from postbacks.conventions import ConfigError as ConfigError

# The stream's built-in policies (stream/rules/dedup.py); `auto` is the preset's vendor identity.
# A plugin registers more in the stream's registry (stream/registry.py), which the ingest may not
# import (services never import each other) and does not need (dedup is the stream's): any name
# of that form is accepted here, and the stream refuses to start on one nobody registered.
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DEDUP_POLICIES = frozenset(
    {
        "auto", "per_click", "per_transaction", "per_action", "legacy_auto",
        "generic", "keitaro", "everflow", "tune", "affise", "voluum", "appsflyer",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    auth: Auth
    rules: NormaliseRules
    allow_ips: tuple[IPNetwork, ...] = ()
    dedup_policy: str = "auto"
    # Requests per second and burst; None: no limit (see ingest.ratelimit).
    rate_limit: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class SourceRegistry:
    sources: Mapping[str, Source]
    trusted_proxies: tuple[IPNetwork, ...] = ()
    default: str = "default"
    secret_params: frozenset[str] = field(default=ALWAYS_SECRET)
    # Every configured token and HMAC key: scrubbed from whatever a refused request left stored.
    secret_values: frozenset[str] = frozenset()
    # The admin API's tokens by name ([admin.tokens]): the name is who made an adjustment.
    admin_tokens: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str | None) -> Source | None:
        return self.sources.get(name or self.default)


def load_sources(path: Path) -> SourceRegistry:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_sources(data, str(path))


def parse_sources(data: Mapping[str, Any], where: str = "sources") -> SourceRegistry:
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, dict) or not raw_sources:
        raise ConfigError(f"{where}: no [sources.<name>] tables")
    sources = {name: _parse_source(name, spec, where) for name, spec in raw_sources.items()}
    secret_params = ALWAYS_SECRET | {
        s.auth.param.lower() for s in sources.values() if isinstance(s.auth, TokenAuth)
    }
    admin_tokens = _admin_tokens(data.get("admin", {}), f"{where}: admin")
    secret_values = {v for s in sources.values() for v in _secrets_of(s.auth)} | set(admin_tokens.values())
    # Every source's rules drop every known secret name, not only its own.
    sources = {
        name: replace(s, rules=replace(s.rules, secret_params=frozenset(secret_params)))
        for name, s in sources.items()
    }
    return SourceRegistry(
        sources=sources,
        trusted_proxies=_networks(data.get("trusted_proxies", []), f"{where}: trusted_proxies"),
        default=str(data.get("default_source", "default")),
        secret_params=frozenset(secret_params),
        secret_values=frozenset(secret_values),
        admin_tokens=admin_tokens,
    )


def _admin_tokens(spec: Any, at: str) -> dict[str, str]:
    tokens = spec.get("tokens", {}) if isinstance(spec, dict) else None
    if not isinstance(tokens, dict) or not all(
        isinstance(name, str) and isinstance(token, str) and len(token) >= 16
        for name, token in tokens.items()
    ):
        raise ConfigError(f"{at}: [admin.tokens] maps a name to a token of at least 16 characters")
    if len(set(tokens.values())) != len(tokens):
        raise ConfigError(f"{at}: two admins share a token, so who made a change would be unknown")
    return dict(tokens)


def _secrets_of(auth: Auth) -> tuple[str, ...]:
    if isinstance(auth, TokenAuth):
        return auth.tokens
    if isinstance(auth, HmacAuth):
        return auth.secrets
    return ()


def _parse_source(name: str, spec: Any, where: str) -> Source:
    at = f"{where}: sources.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: must be a table")
    preset = spec.get("preset", "generic")
    try:
        aliases = build_alias_map(preset, spec.get("aliases", {}))
    except ValueError as exc:
        raise ConfigError(f"{at}: {exc}") from exc
    statuses = {**STATUS_PRESETS[preset], **{k.lower(): v for k, v in spec.get("statuses", {}).items()}}
    policy = spec.get("dedup_policy", "auto")
    if not isinstance(policy, str) or not POLICY_NAME.match(policy):
        raise ConfigError(
            f"{at}: dedup_policy must be one of {sorted(DEDUP_POLICIES)} or a plugin's policy name "
            "(lower-case letters, digits, _)"
        )
    default_event = spec.get("default_event", DEFAULT_EVENTS.get(preset))
    if default_event is not None and not (isinstance(default_event, str) and default_event.strip()):
        raise ConfigError(f"{at}: default_event must be a non-empty event name")
    return Source(
        name=name,
        auth=_parse_auth(spec, at),
        rules=NormaliseRules(aliases, statuses, default_event=default_event),
        allow_ips=_networks(spec.get("allow_ips", []), f"{at}.allow_ips"),
        dedup_policy=policy,
        rate_limit=_rate_limit(spec, at),
    )


def _rate_limit(spec: Mapping[str, Any], at: str) -> tuple[float, float] | None:
    rate = spec.get("rate_limit_per_s")
    if rate is None:
        return None
    burst = spec.get("rate_limit_burst", rate)
    numbers = (int, float)
    if not (isinstance(rate, numbers) and isinstance(burst, numbers) and rate > 0 and burst >= 1):
        raise ConfigError(f"{at}: rate_limit_per_s must be > 0 and rate_limit_burst >= 1")
    return float(rate), float(burst)


def _parse_auth(spec: Mapping[str, Any], at: str) -> Auth:
    kind = spec.get("auth")
    if kind == "token":
        tokens = tuple(spec.get("tokens", ()))
        if not tokens or not all(isinstance(t, str) and len(t) >= 16 for t in tokens):
            raise ConfigError(f"{at}: token auth needs `tokens`, each at least 16 characters")
        return TokenAuth(param=spec.get("token_param", "token"), tokens=tokens)
    if kind == "hmac":
        keys = tuple(spec.get("hmac_secrets", ()))
        if not keys or not all(isinstance(k, str) and len(k) >= 16 for k in keys):
            raise ConfigError(f"{at}: hmac auth needs `hmac_secrets`, each at least 16 characters")
        return HmacAuth(
            secrets=keys,
            header=spec.get("signature_header", "x-signature").lower(),
            timestamp_header=spec.get("timestamp_header", "x-timestamp").lower(),
            max_age_s=int(spec.get("max_age_s", 300)),
        )
    if kind == "none":
        return NoAuth()
    raise ConfigError(f"{at}: auth must be token, hmac or none (got {kind!r})")


def _networks(values: Any, at: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{at}: {exc}") from exc


def write_starter_sources(path: Path) -> str:
    """A first sources file for the local stack: one `default` source with a fresh token."""
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Postback sources. See docs/sending.md 'Sources' for every option.\n"
        'default_source = "default"\n'
        "trusted_proxies = []\n\n"
        "[sources.default]\n"
        'auth = "token"\n'
        f'tokens = ["{token}"]\n'
        'preset = "generic"\n'
        "\n# Who may query the SQL endpoint (ClickHouse's HTTP interface, docs/clickhouse.md \"The SQL\n"
        '# endpoint"); without this table the sink makes up a password at every start.\n'
        "[sql]\n"
        'user = "analyst"\n'
        f'password = "{secrets.token_urlsafe(18)}"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    return token
