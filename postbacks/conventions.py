"""What the services agree on, so none of them has to import another to say it.

Ingest and outbound both read the sources file, both refuse to store secrets, both speak the
four canonical statuses and both sign with the same HMAC: these names live here, in the shared
core, and ingest re-exports them under their old homes (ingest.sources, ingest.auth,
ingest.aliases) so existing imports keep working.
"""

from __future__ import annotations

import hashlib
import hmac


class ConfigError(ValueError):
    """The sources or catalog file is unusable; the message names the entry at fault."""


# Parameters never stored anywhere, whatever the source's own token parameter is called.
ALWAYS_SECRET = frozenset({"token", "security_token", "signature", "sig", "secret", "api_key"})

# Sender statuses mapped to the four the pipeline understands.
CANONICAL_STATUSES: frozenset[str] = frozenset({"approved", "pending", "rejected", "hold"})


def sign(secret: str, message: bytes) -> str:
    """The hex HMAC-SHA256 a sender puts in the signature header (also used by our tests and demo)."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
