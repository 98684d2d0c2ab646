"""Per-source request rate limits: a token bucket per source, refilled continuously.

A sender that floods (a retry storm, a misconfigured tracker replaying a day) must not
take the ingest's capacity from every other source. Over its limit a source gets 429
with Retry-After, which trackers honour by retrying later: nothing is lost, so nothing
is written to the rejected topic either (a flood there would defeat the limit).
The bucket itself is the shared core's (postbacks/ratelimit.py), as the SQL endpoint's is.
"""

from __future__ import annotations

from postbacks.ratelimit import TokenBucket

__all__ = ["TokenBucket"]
