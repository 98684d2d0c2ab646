"""Who may use the SQL endpoint: the `[sql]` table of the sources file, or a password made up at start.

```toml
[sql]
user = "analyst"
password = "at least 16 characters"
```

Without that table the sink makes up a password for ClickHouse's `default` user at every start;
`postbacks up` prints it and `postbacks report` / `sql` read it from the endpoint file (mode 0600).
"""

from __future__ import annotations

import hmac
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path


class AccessError(ValueError):
    """The `[sql]` table is unusable; the message says why."""


@dataclass(frozen=True, slots=True)
class Access:
    user: str
    password: str
    generated: bool = False

    def allows(self, user: str, password: str) -> bool:
        """Both compared in constant time, so neither leaks by timing."""
        same_user = hmac.compare_digest(user.encode(), self.user.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and same_user


def load_access(sources_file: Path) -> Access:
    try:
        data = tomllib.loads(sources_file.read_text(encoding="utf-8")) if sources_file.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AccessError(f"{sources_file}: {exc}") from exc
    spec = data.get("sql")
    if spec is None:
        return Access("default", secrets.token_urlsafe(18), generated=True)
    if not isinstance(spec, dict):
        raise AccessError(f"{sources_file}: [sql] must be a table")
    user, password = spec.get("user", "default"), spec.get("password")
    if not isinstance(user, str) or not user:
        raise AccessError(f"{sources_file}: [sql] user must be a non-empty string")
    if not isinstance(password, str) or len(password) < 16:
        raise AccessError(f"{sources_file}: [sql] password must be a string of at least 16 characters")
    return Access(user, password)
