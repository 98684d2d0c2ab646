"""Sinks: batched, exactly-once writers into ClickHouse (issue: sinks stage)."""
