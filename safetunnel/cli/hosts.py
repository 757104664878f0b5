"""``safetunnel hosts``: saved host profiles in config.toml."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import click

from safetunnel.cli.helpfmt import FullHelpGroup
from safetunnel.errors import UsageError
from safetunnel.hosts.config import Config, HostProfile, load_config, save_config
from safetunnel.hosts.resolve import locate_host, parse_literal, ssh_config_alias


@click.group(cls=FullHelpGroup)
def hosts() -> None:
    """Saved SSH hosts (profiles) and the default host."""


@hosts.command("add")
@click.argument("name")
@click.argument("host")
@click.option(
    "--identity",
    type=click.Path(exists=True, dir_okay=False),
    help="Private key file to use for this host.",
)
@click.option("--default", "make_default", is_flag=True, help="Make this the default host.")
@click.option(
    "--no-check",
    is_flag=True,
    help="Save without looking the host up or logging in (a host that is offline now).",
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="Read this known_hosts file instead of ~/.ssh/known_hosts.",
)
def add(
    name: str,
    host: str,
    identity: str | None,
    make_default: bool,
    no_check: bool,
    known_hosts: str | None,
) -> None:
    """Save HOST ([user@]hostname[:port] or an ~/.ssh/config alias) as NAME.

    Unless --no-check, HOST must be an ~/.ssh/config alias or resolve, and safetunnel logs in
    once, as a share would: an unknown host key is shown for you to trust (typed yes, or its
    fingerprint pasted), and a passphrase or password is asked for when needed.
    """
    config = load_config()
    key = os.path.abspath(os.path.expanduser(identity)) if identity else None
    config.add_profile(HostProfile(name=name, host=host, identity=key), make_default)
    _check_host(host, resolve=not no_check)
    if not no_check:
        from safetunnel.cli.hostcheck import check_login  # paramiko only when it logs in

        check_login(name, config, known_hosts)
    path = save_config(config)
    click.echo(f"Saved host {name} ({host}) in {path}.")
    if make_default:
        click.echo(f"{name} is now the default host.")
        _note_env_override(config)
    elif config.default_host is None:
        click.echo(f"Make it the default with `safetunnel hosts default {name}`.")
    if not no_check:
        click.echo(
            f"Next (recommended): `safetunnel hosts setup-key {name} --install` makes a key "
            "that can do nothing on the host but safetunnel's forward."
        )


def _check_host(host: str, resolve: bool) -> None:
    """An ~/.ssh/config alias, or a well-formed literal host whose name resolves (when
    ``resolve``); else a usage error."""
    if ssh_config_alias(host) is not None:
        return
    ref = parse_literal(host)  # refuse a malformed host now, not at the first share
    if not resolve:
        return
    try:
        socket.getaddrinfo(ref.hostname, ref.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UsageError(
            f"{ref.hostname!r} is neither an ~/.ssh/config alias nor a host name that resolves"
            f" ({err})",
            hint="Check the spelling, or pass --no-check to save it anyway.",
        ) from None


@hosts.command("default")
@click.argument("name")
def default(name: str) -> None:
    """Make saved host NAME the default: shares without --host go through it."""
    config = load_config()
    if name not in config.hosts:
        raise UsageError(
            f"no saved host profile {name!r} ({config.known_profiles()})",
            hint=f"Add it first: `safetunnel hosts add {name} [user@]host[:port] --default`.",
        )
    config.set_default_host(name)
    save_config(config)
    click.echo(f"{name} is now the default host.")
    _note_env_override(config)


def _note_env_override(config: Config) -> None:
    if config.default_host_from_env:
        click.echo(f"Note: SAFETUNNEL_HOST={config.default_host} overrides it while set.", err=True)


@hosts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_hosts(as_json: bool) -> None:
    """List saved hosts; the default is marked with *."""
    config = load_config()
    rows = [_row(p, config.default_host) for _, p in sorted(config.hosts.items())]
    if as_json:
        source = (
            "env" if config.default_host_from_env else ("config" if config.default_host else None)
        )
        click.echo(
            json.dumps(
                {"default_host": config.default_host, "default_source": source, "hosts": rows},
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("No saved hosts. Add one with `safetunnel hosts add NAME [user@]host[:port]`.")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            mark = "*" if r["default"] else " "
            key = f"  key {r['identity']}" if r["identity"] else ""
            click.echo(f"{mark} {r['name']:<{width}}  {r['host']}{key}")
    _say_default(config.default_host, config.default_host_from_env)


@hosts.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Show one saved host and where it resolves to."""
    config = load_config()
    profile = config.profile(name)
    ref = locate_host(name, config)
    click.echo(f"name:      {profile.name}")
    click.echo(f"host:      {profile.host}")
    click.echo(f"connects:  {ref.display}")
    click.echo(f"identity:  {', '.join(ref.identity_files) or '(agent / default keys)'}")
    click.echo(f"default:   {'yes' if config.default_host == name else 'no'}")


@hosts.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget a saved host (stored secrets stay; see `safetunnel creds delete`)."""
    config = load_config()
    was_default = config.remove_profile(name)
    save_config(config)
    click.echo(f"Removed host {name}.")
    if was_default:
        click.echo(
            "It was the default host; shares now use the built-in loopback gateway "
            "unless --host is given."
        )


def _row(profile: HostProfile, default: str | None) -> dict[str, Any]:
    return {**profile.as_dict(), "default": profile.name == default}


def _say_default(default: str | None, from_env: bool) -> None:
    if default is None:
        click.echo("Default host: none (the built-in loopback gateway).")
    else:
        origin = " (from SAFETUNNEL_HOST)" if from_env else ""
        click.echo(f"Default host: {default}{origin}.")


def _register_key_commands() -> None:
    # Kept in their own module (hosts.py stays about profiles); importing it here keeps the
    # lazy loading of safetunnel.cli: paramiko is imported only when `hosts` is used.
    from safetunnel.cli.hostkeys import trust_command
    from safetunnel.cli.setupkey import setup_key_command

    hosts.add_command(trust_command)
    hosts.add_command(setup_key_command)


_register_key_commands()
