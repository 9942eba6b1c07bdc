"""The gateway as a user runs it: a process that starts on a config, refuses bad ones, and stops on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = """
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:0"}
    http: {endpoint: "127.0.0.1:0"}
prometheus: {endpoint: "127.0.0.1:0"}
"""


@contextlib.contextmanager
def gateway_process(config: Path, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """The gateway as a child process; killed if a failed assertion leaves it running."""
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def wait_for_event(process: subprocess.Popen[bytes], event: str, timeout: float = 20.0) -> dict[str, object]:
    """Read JSON log lines from stderr until ``event`` appears (no sleeping, no polling)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        record = json.loads(line)
        if record.get("event") == event:
            return record  # type: ignore[no-any-return]
    raise AssertionError(f"{event} not logged")


def test_sigterm_stops_the_gateway_with_exit_0_within_10_seconds(tmp_path: Path) -> None:
    """After gateway_started, SIGTERM drains and exits 0 in under 10 s."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    with gateway_process(config) as process:
        started = wait_for_event(process, "gateway_started")
        assert isinstance(started["grpc_port"], int) and started["grpc_port"] > 0
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert 0 == process.wait(timeout=10)
        assert time.monotonic() - began < 10


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    """A bad value never reaches a listening socket: exit code 2 and the key path on stderr."""
    config = tmp_path / "gateway.yaml"
    config.write_text("prometheus: {endpoint: nowhere}\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "--config", str(config)], capture_output=True, timeout=60)
    assert 2 == result.returncode
    assert b"prometheus.endpoint: expected host:port" in result.stderr


@pytest.mark.parametrize("flag", ["--log-format=console"])
def test_console_log_format_is_human_readable(tmp_path: Path, flag: str) -> None:
    """--log-format console prints key=value lines instead of JSON."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    with gateway_process(config, flag) as process:
        assert process.stderr is not None
        line = b""
        deadline = time.monotonic() + 20
        while b"gateway_started" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        assert b"gateway_started" in line
        assert not line.startswith(b"{")
        process.send_signal(signal.SIGINT)
        assert 0 == process.wait(timeout=10)
