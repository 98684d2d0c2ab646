"""Child processes that do not outlive their supervisor.

Services run in their own session so a Ctrl-C at the terminal reaches only the
supervisor, which stops them in order. If the supervisor itself is killed
(SIGKILL, OOM), Linux's parent-death signal makes each child get SIGTERM instead
of running on orphaned.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from postbacks.lifecycle import die_with_parent


def spawn(argv: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a service: own session, output appended to `log_path`, gone if the supervisor dies."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
