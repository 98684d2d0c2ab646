"""Structured logs: one JSON object per line, with the `extra` fields of each call.

Log shippers (Vector, Fluent Bit, Loki) parse these without regexes; `LOG_FORMAT=text`
gives the same content for a human at a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class RateLimitFilter(logging.Filter):
    """Lets each warning or error template through once per `interval_s`, counting what it held back.

    A client library retrying a dead connection every 100 ms should say so, not flood the log.
    Info records pass untouched: they are rare by design, and some (a batch re-formed after a
    crash) are the evidence an operator needs.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        last = self._last.get(key)
        if last is not None and record.created - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = record.created
        held = self._held.pop(key, 0)
        if held:
            record.suppressed_since_last = held
        return True


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt (every 100 ms during an outage): keep one per 10 s.
    kafka_logger = logging.getLogger("aiokafka")
    # LOG_LEVEL=DEBUG shows the client's own protocol chatter too.
    kafka_logger.setLevel(root.level if root.level <= logging.DEBUG else max(root.level, logging.WARNING))
    handler.addFilter(RateLimitFilter())
