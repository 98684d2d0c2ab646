"""Pure decision rules of the stream: each takes records in and returns a decision, no I/O."""
