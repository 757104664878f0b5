"""Helpers shared by the issue-5 end-to-end tests (trust, stored secrets, setup-key).

Command lines, the pty driver and the polling/socket helpers live in e2e.py; this module adds
only what those tests need on top: an environment without ssh-agent, and a share
that is started and stopped through the console script.
"""

from __future__ import annotations

from typing import Any

from conftest import Sandbox
from e2e import share_argv
from shareproc import ShareProcess, run


def env_without_agent(sandbox: Sandbox) -> dict[str, str]:
    """The sandbox env with no ssh-agent: the tests prove the keyring path, not the agent."""
    env = dict(sandbox.env)
    env.pop("SSH_AUTH_SOCK", None)
    return env


def share_started(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], ShareProcess]:
    """Start ``safetunnel share PORT … --ttl 30s --yes --json`` and wait for its started event."""
    proc = ShareProcess(share_argv(*args, ttl="30s"), env)
    try:
        return proc.started(), proc
    except BaseException:
        proc.kill()
        raise


def stop(proc: ShareProcess, env: dict[str, str]) -> int:
    """``safetunnel kill --all``: a clean stop (exit 0 after a full teardown). The sandbox's
    state dir holds only this test's tunnels.

    Not SIGTERM: cli/share.py installs its signal handlers only after the started event, so a
    signal sent right after it can kill the process before any teardown (reported upstream).
    """
    killed = run(["kill", "--all"], env, timeout=20)
    assert killed.returncode == 0, killed.stderr
    return proc.wait(20)
