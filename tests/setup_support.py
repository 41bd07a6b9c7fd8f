"""What the test set-up installs on the machine, said before it is done.

The browser test needs Debian's ``chromium`` and ``chromium-driver``. CI
machines start without them, so the set-up installs them with ``apt-get``
(root needed) -- after printing one line that says what, why and how, so a
person running ``make test`` is never surprised by a system package install.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def apt_install(
    packages: Sequence[str],
    reason: str,
    *,
    say: Callable[[str], None],
    run: Runner = subprocess.run,
) -> str | None:
    """Announce, then ``apt-get update`` and ``apt-get install -y packages``.

    Returns ``None`` on success, or the failed command with the end of its output.
    """
    names = " ".join(packages)
    say(
        f"[test set-up] installing {names} with apt-get ({reason}); "
        "this changes the machine and takes a minute or two, once"
    )
    env: dict[str, Any] = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_lock = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        ["apt-get", *wait_lock, "update"],
        ["apt-get", *wait_lock, "install", "-y", *packages],
    ):
        done = run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    say(f"[test set-up] installed {names}")
    return None
