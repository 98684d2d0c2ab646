"""The shared core of postback-pipeline: settings, logs, topics, catalog, groups, metrics.

Every service (ingest, stream, sinks, outbound) stands on it; it imports no service and no
command (commands/ is the floor above: the CLI, the demo, the local stack)."""
