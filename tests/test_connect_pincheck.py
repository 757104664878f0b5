"""The KnownHostsCommand that makes ssh trust exactly the ticket's host key."""

from __future__ import annotations

import subprocess
import sys

from safetunnel.receiving.pincheck import fingerprint_of, line_for
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.keys import generate_ed25519


def test_the_pinned_key_gets_its_known_hosts_line_and_any_other_gets_nothing() -> None:
    pinned, other = generate_ed25519(), generate_ed25519()
    wanted = fingerprint(pinned)
    assert fingerprint_of(pinned.get_base64()) == wanted
    line = line_for(wanted, "alias", pinned.get_name(), pinned.get_base64())
    assert line == f"alias {pinned.get_name()} {pinned.get_base64()}"
    assert line_for(wanted, "alias", other.get_name(), other.get_base64()) is None
    assert line_for(wanted, "alias", "ssh-ed25519", "not base64!") is None


def test_as_ssh_runs_it_it_prints_only_for_the_pinned_key() -> None:
    pinned, other = generate_ed25519(), generate_ed25519()

    def run(key_b64: str) -> str:
        argv = [sys.executable, "-m", "safetunnel.receiving.pincheck", fingerprint(pinned)]
        argv += ["h", "ssh-ed25519", key_b64]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    assert run(pinned.get_base64()).strip().endswith(pinned.get_base64())
    assert run(other.get_base64()) == ""
