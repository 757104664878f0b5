"""``hosts add``'s check: log in once, as a share would, before the profile is saved.

The same engine, host-key rules and secrets as a share: an unknown key is shown on a terminal
to be trusted (typed yes or the pasted fingerprint) and pinned in safetunnel's own known_hosts;
without a terminal it is refused with the command that pins it. Nothing is forwarded.
"""

from __future__ import annotations

import dataclasses

from safetunnel.cli.hostkeys import interactive, say, secret_prompt, trust_prompt
from safetunnel.errors import SafetunnelError
from safetunnel.hosts.config import Config
from safetunnel.hosts.resolve import resolve_host
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing.connector import Connector
from safetunnel.sharing.engines import choose_engine
from safetunnel.sharing.options import DEFAULT_KEEPALIVE


def check_login(name: str, config: Config, known_hosts: str | None) -> None:
    """Log in to profile ``name`` of ``config`` and out again; its error when that fails, with
    the way to save the host unchecked."""
    target = resolve_host(name, config)
    if target is None:  # a profile always names a host; only the built-in has none
        return
    # Hints name what the user typed: the profile does not exist until this check passes.
    target = dataclasses.replace(target, label=config.hosts[name].host)
    engine = choose_engine(None, config, builtin=False)
    on_tty = interactive()
    auth = KeyringAuthSource(
        notify=say,
        host_label=target.label,
        prompt=secret_prompt if on_tty else None,
        confirm=None,
    )
    connector = Connector(target, engine, known_hosts, DEFAULT_KEEPALIVE, auth)
    try:
        session = connector.open(trust_prompt if on_tty else None)
    except SafetunnelError as err:
        hint = f"{err.hint} " if err.hint else ""
        err.message = f"{err.message} (host {name} not saved)"
        err.hint = f"{hint}Or save it without this check: add --no-check."
        err.args = (err.message,)
        raise
    try:
        say(f"Logged in to {target.display} ({session.key_type} {session.fingerprint}).")
    finally:
        session.close()
