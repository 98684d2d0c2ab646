"""Outbound postbacks: pass each attributed conversion on to the publisher that brought its click.

Small modules, one job each:

- `templates`  URL/body templates with `{macro}`s, encoded per context (pure)
- `config`     the `[publishers.<id>]` tables of the sources file, validated at start
- `plan`       which delivery a conversion version needs, its request and idempotency key (pure)
- `policy`     retry/backoff/give-up and the per-destination pause switch (pure)
- `state`      recorded delivery states and what a restarted worker does with them (pure)
- `progress`   which offsets may be committed (pure)
- `records`    what is written to Kafka (states, attempts, dead letters) and read back
- `delivery`   one destination's queue, connections and pause switch (httpx)
- `service`    `postbacks outbound`: the consumer, partitions and commits

docs/outbound.md describes the guarantees and their limits.
"""
