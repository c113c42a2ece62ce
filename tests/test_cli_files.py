"""CLI and files: restart keeps the port, and bad names or paths get one clear line."""
from __future__ import annotations

import pytest

from broke.control.runfiles import read_record
from broke.procs import free_port
from conftest import add_fake_backends, assert_one_error_line
from fake_provider import FakeProvider


@pytest.mark.timeout(300)
def test_restart_without_port_keeps_the_recorded_port(broke_home, cli):
    fake = FakeProvider().start()
    try:
        add_fake_backends(broke_home, fake, "model-a")
        assert cli("swap", "sonnet=fake/model-a").exit_code == 0
        port = free_port()
        started = cli("start", "--port", str(port))
        assert started.exit_code == 0, started.output
        try:
            restarted = cli("restart")
            assert restarted.exit_code == 0, restarted.output
            assert f"127.0.0.1:{port}" in restarted.stdout
            record = read_record(broke_home)
            assert record is not None and record.front.port == port
        finally:
            cli("stop")
    finally:
        fake.stop()
