"""The test set-up says what it installs before installing it."""

from __future__ import annotations

import subprocess
from typing import Any

from .setup_support import apt_install


def test_apt_install_announces_before_running_anything() -> None:
    log: list[str] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        log.append("ran: " + " ".join(command[3:]))  # past "apt-get -o <lock timeout>"
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        return subprocess.CompletedProcess(command, 0, "", "")

    assert (
        apt_install(["chromium", "chromium-driver"], "for a test", say=log.append, run=run) is None
    )
    assert log[0].startswith("[test set-up] installing chromium chromium-driver with apt-get")
    assert "for a test" in log[0]
    assert log[1:] == [
        "ran: update",
        "ran: install -y chromium chromium-driver",
        "[test set-up] installed chromium chromium-driver",
    ]


def test_apt_install_reports_the_failed_command() -> None:
    said: list[str] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package")

    problem = apt_install(["nothing"], "why", say=said.append, run=run)
    assert problem is not None and problem.startswith("apt-get -o DPkg::Lock::Timeout=300 update")
    assert "Unable to locate package" in problem
    assert len(said) == 1  # announced, never claimed success
