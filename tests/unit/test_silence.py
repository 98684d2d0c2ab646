"""A silenced process answers nobody: its connections end, its listener accepts no one, it still runs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from postbacks.local.silence import CannotSilence, silence

# A tiny echo server: one connection held open, then it keeps accepting.
ECHO_SERVER = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
while True:
    try:
        conn, _ = srv.accept()
    except OSError:
        continue
    try:
        while data := conn.recv(100):
            conn.sendall(data)
    except OSError:
        pass
"""


def test_a_silenced_process_is_cut_off_and_resumes_to_finish() -> None:
    process = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"ping")
        assert client.recv(100) == b"ping"  # served before

        assert silence(process.pid) >= 2  # the listener and the connection
        process.send_signal(signal.SIGCONT)

        client.sendall(b"after")
        assert client.recv(100) == b""  # the connection is over, nothing echoed
        try:
            late = socket.create_connection(("127.0.0.1", port), timeout=2)
            late.sendall(b"hello")
            answer = late.recv(100)
        except OSError:
            answer = b""
        assert answer == b""  # no new client is served either
        time.sleep(0.2)
        assert process.poll() is None  # and it runs on, to save and exit on its own
    finally:
        process.kill()
        process.wait()


def test_a_process_that_is_gone_cannot_be_silenced_and_says_so() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    with pytest.raises(CannotSilence, match=str(process.pid)):
        silence(process.pid)
