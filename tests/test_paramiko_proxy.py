"""The paramiko engine never connects directly to a host the ssh_config routes through a proxy:
it refuses by name and points at the OpenSSH engine (a direct connection would reach another
machine, or fail, silently)."""

from __future__ import annotations

import socket

import pytest
from conftest import Sandbox
from sshd import SSHD

from safetunnel.errors import ConfigError
from safetunnel.hosts.config import Config, HostProfile
from safetunnel.hosts.resolve import resolve_host
from safetunnel.ssh.client import fetch_host_key, open_session
from safetunnel.ssh.hostkeys import HostKeyStore


def _write_config(sandbox: Sandbox, text: str) -> None:
    ssh_dir = sandbox.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text(text)


@pytest.mark.parametrize(
    ("option", "line"),
    [("ProxyJump", "ProxyJump nobody@127.0.0.1:9"), ("ProxyCommand", "ProxyCommand nc %h %p")],
)
def test_proxied_alias_is_refused_without_connecting(
    sandbox: Sandbox, shared_sshd: SSHD, option: str, line: str
) -> None:
    with socket.socket() as direct:  # where a direct connection would land; nobody else knows it
        direct.bind(("127.0.0.1", 0))
        direct.listen(1)
        direct.setblocking(False)
        port = direct.getsockname()[1]
        _write_config(sandbox, f"Host viaproxy\n  HostName 127.0.0.1\n  Port {port}\n  {line}\n")
        target = resolve_host("viaproxy", Config())
        assert target is not None and target.proxy == option
        store = HostKeyStore(shared_sshd.known_hosts, sandbox.config_dir / "known_hosts")
        with pytest.raises(ConfigError) as caught:
            open_session(target, hostkeys=store, on_unknown_key=None, auth=None)
        assert option in caught.value.message
        assert caught.value.hint is not None and "--engine openssh" in caught.value.hint
        with pytest.raises(ConfigError):  # `hosts trust` fetches the key the same way
            fetch_host_key(target, store)
        with pytest.raises(BlockingIOError):
            direct.accept()


def test_profile_over_proxied_alias_is_refused(sandbox: Sandbox) -> None:
    _write_config(sandbox, "Host inner\n  HostName 10.9.9.9\n  ProxyJump bastion\n")
    config = Config(hosts={"work": HostProfile(name="work", host="inner", user="deploy")})
    target = resolve_host("work", config)
    assert target is not None
    assert (target.proxy, target.user, target.hostname) == ("ProxyJump", "deploy", "10.9.9.9")
    assert target.ssh_destination == "ssh://deploy@inner"


def test_proxycommand_none_is_no_proxy(sandbox: Sandbox, shared_sshd: SSHD) -> None:
    _write_config(
        sandbox,
        f"Host direct\n  HostName 127.0.0.1\n  Port {shared_sshd.port}\n  ProxyCommand none\n"
        "  ProxyJump none\n",
    )
    target = resolve_host("direct", Config())
    assert target is not None and target.proxy == ""
    store = HostKeyStore(shared_sshd.known_hosts, sandbox.config_dir / "known_hosts")
    key = fetch_host_key(target, store)
    assert key.asbytes() == shared_sshd.host_key.asbytes()


def test_destinations_keep_only_what_was_typed() -> None:
    assert resolve_host("alice@h.example", Config()).ssh_destination == "ssh://alice@h.example"  # type: ignore[union-attr]
    assert resolve_host("h.example:2200", Config()).ssh_destination == "ssh://h.example:2200"  # type: ignore[union-attr]
    assert resolve_host("[::1]:2222", Config()).ssh_destination == "ssh://[::1]:2222"  # type: ignore[union-attr]
