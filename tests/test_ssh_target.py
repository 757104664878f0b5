from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from safetunnel.errors import ConfigError
from safetunnel.ssh.target import SSHTarget, from_ssh_config, parse_target

ME = getpass.getuser()


@pytest.mark.parametrize(
    ("text", "user", "host", "port"),
    [
        ("bastion", ME, "bastion", 22),
        ("alice@bastion.example.com", "alice", "bastion.example.com", 22),
        ("alice@10.0.0.5:2222", "alice", "10.0.0.5", 2222),
        ("[::1]:2222", ME, "::1", 2222),
        ("bob@[::1]", "bob", "::1", 22),
        ("fe80::1", ME, "fe80::1", 22),
        ("  host:1 ", ME, "host", 1),
        ("a.b@host", "a.b", "host", 22),
    ],
)
def test_parse_target_accepts(text: str, user: str, host: str, port: int) -> None:
    target = parse_target(text)
    assert (target.user, target.hostname, target.port) == (user, host, port)
    assert target.label == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "host:",
        "host:0",
        "host:65536",
        "host:22x",
        "@host",
        "-oProxyCommand=x",
        "host name",
        "a@b@",
        "[::1]:",
        "[::1]x",
        "user@-host",
        "ho$t",
        "a..b",
        "bad user@host",
        "h:1:2:z",
    ],
)
def test_parse_target_rejects_with_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_target(text)
    assert info.value.hint and "[user@]host[:port]" in info.value.hint


def test_display_brackets_ipv6() -> None:
    assert SSHTarget("::1", 2222, "root").display == "root@[::1]:2222"
    assert SSHTarget("h").display == f"{ME}@h:22"


def test_from_ssh_config_resolves_alias(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host bastion\n  HostName 10.1.2.3\n  User alice\n  Port 2200\n"
        "  IdentityFile ~/.ssh/bastion_key\n\n"
        "Host *.corp\n  User carol\n\n"
        "Host *\n  User everyone\n  IdentityFile ~/.ssh/id_default\n"
    )
    target = from_ssh_config("bastion", config)
    assert target is not None
    assert (target.hostname, target.user, target.port) == ("10.1.2.3", "alice", 2200)
    home = str(Path.home())
    assert target.identity_files[0] == f"{home}/.ssh/bastion_key"
    assert all(not f.startswith("~") for f in target.identity_files)
    assert target.label == "bastion"
    corp = from_ssh_config("db.corp", config)
    assert corp is not None and (corp.hostname, corp.user, corp.port) == ("db.corp", "carol", 22)


def test_from_ssh_config_none_without_own_block(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n  User everyone\n")
    assert from_ssh_config("elsewhere", config) is None
    assert from_ssh_config("x", tmp_path / "missing") is None


def test_from_ssh_config_bad_port_is_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host weird\n  Port notaport\n")
    with pytest.raises(ConfigError):
        from_ssh_config("weird", config)
