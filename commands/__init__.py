"""The command layer of postback-pipeline: the `postbacks` CLI, the demo, the local stack.

It sits above the services (ingest, stream, sinks, outbound) and the shared core (postbacks/):
it may import any of them, and none of them imports it (tests/unit/test_layers.py).
"""
