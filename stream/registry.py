"""Extension points of the stream: dedup policies, fraud rules, enrichment steps.

Adding one is a function plus one line of registration:

    from stream.registry import registry

    @registry.fraud_rule("datacenter_ip")
    def datacenter_ip(postback, click, ctx):
        if click["ip"].startswith("203.0.113."):
            return Refused("datacenter_ip", "click from a hosting range")
        return None

Modules that register are loaded from the `postback_pipeline.stream` entry-point group
of installed packages, and from `STREAM_PLUGINS` (comma-separated module names).
Built-ins register the same way (stream/builtins.py), so they are examples too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, NamedTuple, TypeVar

from postbacks.catalog import Offer
from stream.rules.attribution import Attributed, AttributionRules, Refused

Record = Mapping[str, Any]


class RuleContext(NamedTuple):
    """What a rule may know besides the records: the offer, its rules, the timing, the rates.

    A named tuple (made per postback): a frozen dataclass sets each field through object.__setattr__.
    """

    offer: Offer | None
    rules: AttributionRules
    attributed: Attributed
    rates: Mapping[str, Any]


DedupPolicy = Callable[[Record, Record], str]
FraudRule = Callable[[Record, Record, RuleContext], Refused | None]
Enricher = Callable[[MutableMapping[str, Any], Record, Record, RuleContext], None]

F = TypeVar("F", bound=Callable[..., Any])

ENTRY_POINT_GROUP = "postback_pipeline.stream"


@dataclass
class Registry:
    dedup_policies: dict[str, DedupPolicy] = field(default_factory=dict)
    fraud_rules: dict[str, FraudRule] = field(default_factory=dict)
    enrichers: dict[str, Enricher] = field(default_factory=dict)

    def dedup_policy(self, name: str) -> Callable[[F], F]:
        """Register `fn(postback, click) -> key`; sources select it by name (`dedup_policy`)."""
        return self._register(self.dedup_policies, name)

    def fraud_rule(self, name: str) -> Callable[[F], F]:
        """Register `fn(postback, click, ctx) -> Refused | None`, run in order after attribution."""
        return self._register(self.fraud_rules, name)

    def enrichment(self, name: str) -> Callable[[F], F]:
        """Register `fn(conversion, postback, click, ctx)`, which fills fields of the conversion.

        Custom attributes go in `conversion["enrichment"]` (a string map), so no schema change is needed.
        """
        return self._register(self.enrichers, name)

    @staticmethod
    def _register(table: dict[str, Any], name: str) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            if name in table and table[name] is not fn:
                raise ValueError(f"{name!r} is already registered")
            table[name] = fn
            return fn

        return decorator

    def policy(self, name: str) -> DedupPolicy:
        try:
            return self.dedup_policies[name]
        except KeyError:
            raise KeyError(f"unknown dedup policy {name!r}; known: {sorted(self.dedup_policies)}") from None


registry = Registry()


def load_plugins(modules: str = "") -> list[str]:
    """Import the built-ins, entry-point plugins and `modules`; returns what was loaded."""
    loaded = ["stream.builtins"]
    importlib.import_module("stream.builtins")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
        loaded.append(entry.value)
    for name in filter(None, (m.strip() for m in modules.split(","))):
        importlib.import_module(name)
        loaded.append(name)
    return loaded
