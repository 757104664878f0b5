from __future__ import annotations

import getpass
import stat
import tomllib
from pathlib import Path

import pytest
from conftest import Sandbox
from hypothesis import given, settings
from hypothesis import strategies as st

from safetunnel.errors import ConfigError
from safetunnel.hosts import tomlwrite
from safetunnel.hosts.config import Config, HostProfile, load_config, save_config, validate_ttl
from safetunnel.hosts.resolve import (
    HostRef,
    MissingKeyFile,
    locate_host,
    parse_literal,
    ssh_aliases,
)

AWKWARD = [
    'quote " and \\ backslash',
    "new\nline\ttab\r",
    "uni ✓ café",
    "del \x7f nul-ish \x01",
    "# not a comment",
    "[hosts.fake]",
    '"""',
    "trailing space ",
    "",
]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("text", AWKWARD)
def test_quote_round_trips_awkward_strings(text: str) -> None:
    assert tomllib.loads(f"k = {tomlwrite.quote(text)}")["k"] == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_quote_round_trips_any_string(text: str) -> None:
    assert tomllib.loads(f"k = {tomlwrite.quote(text)}")["k"] == text


def test_missing_file_gives_defaults(sandbox: Sandbox) -> None:
    config = load_config()
    assert (config.default_host, config.default_ttl, config.max_ttl) == (None, "30m", "24h")
    assert config.hosts == {}
    assert not sandbox.config_dir.exists()  # reading never creates anything


def test_save_load_round_trip_with_modes(sandbox: Sandbox) -> None:
    config = Config(default_ttl="1h", max_ttl="2d")
    for index, text in enumerate(AWKWARD[:-1]):
        config.add_profile(
            HostProfile(
                f"p{index}",
                host=f"u@h{index}:2{index}",
                identity=text,
                user=text or None,
                port=1000 + index,
            )
        )
    config.set_default_host("p1")
    path = save_config(config)
    assert mode(path) == 0o600
    assert mode(sandbox.config_dir) == 0o700
    loaded = load_config()
    assert loaded.hosts == config.hosts
    assert (loaded.default_host, loaded.default_ttl, loaded.max_ttl) == ("p1", "1h", "2d")


def test_malformed_file_says_where(sandbox: Sandbox) -> None:
    sandbox.config_dir.mkdir(mode=0o700)
    (sandbox.config_dir / "config.toml").write_text('default_ttl = "30m"\n[hosts.a\nhost = 1\n')
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_config()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('max_tll = "1h"\n', "unknown key.*max_tll"),
        ('[hosts.a]\nhost = "h:22"\nport = true\n', "port must be an integer"),
        ('[hosts.a]\nhost = "h"\nport = 70000\n', "out of range"),
        ('[hosts.a]\nidentity = "k"\n', "needs host"),
        ('max_ttl = "forever"\n', "max_ttl"),
        ('default_ttl = "2d"\n', "longer than max_ttl"),
        ('hosts = "x"\n', "must be a table"),
    ],
)
def test_bad_values_are_config_errors(sandbox: Sandbox, body: str, message: str) -> None:
    sandbox.config_dir.mkdir(mode=0o700)
    (sandbox.config_dir / "config.toml").write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_env_host_overrides_but_is_never_saved(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config()
    config.add_profile(HostProfile("saved", host="u@saved:22"), make_default=True)
    save_config(config)
    monkeypatch.setenv("SAFETUNNEL_HOST", "u@from-env:2200")
    config = load_config()
    assert config.default_host == "u@from-env:2200" and config.default_host_from_env
    save_config(config)
    assert 'default_host = "saved"' in (sandbox.config_dir / "config.toml").read_text()
    assert "from-env" not in (sandbox.config_dir / "config.toml").read_text()


def test_profile_rules() -> None:
    config = Config()
    config.add_profile(HostProfile("a", host="h"), make_default=True)
    with pytest.raises(ConfigError, match="already exists"):
        config.add_profile(HostProfile("a", host="h2"))
    with pytest.raises(ConfigError, match="invalid profile name"):
        config.add_profile(HostProfile("a.b", host="h"))
    with pytest.raises(ConfigError, match=r"no saved host profile 'zz' \(saved: a\)"):
        config.profile("zz")
    assert config.remove_profile("a") is True
    assert config.default_host is None


def test_ttl_above_max_is_refused_with_hint() -> None:
    config = Config(max_ttl="1h")
    assert validate_ttl(3600, config) == 3600
    with pytest.raises(ConfigError, match="longer than max_ttl 1h") as info:
        validate_ttl(3601, config)
    assert "max_ttl" in (info.value.hint or "")


# --- resolution: profile -> ~/.ssh/config alias -> literal ---


def write_ssh_config(sandbox: Sandbox) -> None:
    ssh = sandbox.home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "config").write_text(
        "Host jump\n  HostName jump.example.org\n  User carol\n  Port 2022\n"
        "  IdentityFile ~/.ssh/jump_key\n"
        "Host shared\n  HostName alias-wins.example.org\n"
        "Host *.internal\n  User wild\n"
    )


def test_resolution_order(sandbox: Sandbox) -> None:
    write_ssh_config(sandbox)
    config = Config()
    config.add_profile(HostProfile("shared", host="bob@profile-wins.example.org:2200"))
    by_profile = locate_host("shared", config)
    assert (by_profile.kind, by_profile.hostname, by_profile.user) == (
        "profile",
        "profile-wins.example.org",
        "bob",
    )
    jump_key = sandbox.home / ".ssh/jump_key"
    assert locate_host("jump", config).identity_files == ()  # missing: skipped, as ssh does
    jump_key.write_text("key\n")
    alias = locate_host("jump", config)
    assert alias == HostRef(
        "alias",
        label="jump",
        hostname="jump.example.org",
        port=2022,
        user="carol",
        identity_files=(str(sandbox.home / ".ssh/jump_key"),),
        destination="jump",
    )
    literal = locate_host("dave@db.example.org:2201", config)
    assert literal.display == "dave@db.example.org:2201" and literal.kind == "literal"
    assert ssh_aliases() == ["jump", "shared"]  # wildcard patterns are not aliases


def test_profile_can_point_at_an_alias_and_override(sandbox: Sandbox) -> None:
    write_ssh_config(sandbox)
    config = Config()
    config.add_profile(HostProfile("work", host="jump", identity="~/k", port=2300))
    with pytest.raises(MissingKeyFile, match=r"key file of host work does not exist: .*/k$") as err:
        locate_host("work", config)  # a key the user named is never silently skipped
    assert err.value.exit_code == 2
    (sandbox.home / "k").write_text("key\n")
    ref = locate_host("work", config)
    assert (ref.hostname, ref.user, ref.port) == ("jump.example.org", "carol", 2300)
    assert ref.identity_files[0] == str(sandbox.home / "k")


def test_unknown_bare_name_lists_what_exists(sandbox: Sandbox) -> None:
    write_ssh_config(sandbox)
    config = Config()
    config.add_profile(HostProfile("bastion", host="u@b:22"))
    with pytest.raises(ConfigError, match=r"bastoin.*saved: bastion.*jump, shared"):
        locate_host("bastoin", config)
    assert locate_host("bastoin:22", config).kind == "literal"  # the way to mean a hostname


def test_no_host_uses_default_then_builtin(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert locate_host(None, load_config()).kind == "builtin"
    config = load_config()
    config.add_profile(HostProfile("b", host="u@b.example:22"), make_default=True)
    save_config(config)
    assert locate_host(None, load_config()).label == "b"
    monkeypatch.setenv("SAFETUNNEL_HOST", "x@env.example:2222")
    assert locate_host(None, load_config()).display == "x@env.example:2222"


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("h.example", f"{getpass.getuser()}@h.example:22"),
        ("a@[2001:db8::1]:2222", "a@[2001:db8::1]:2222"),
        ("localhost", f"{getpass.getuser()}@localhost:22"),
        # A bare IPv6 literal has no room for a port, so it is unambiguous (as for `ssh ::1`).
        ("::1", f"{getpass.getuser()}@[::1]:22"),
    ],
)
def test_parse_literal(text: str, display: str) -> None:
    assert parse_literal(text).display == display


@pytest.mark.parametrize("text", ["u@@b", "h:99999", "h:", "bad host", "[::1:22"])
def test_parse_literal_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_literal(text)


def test_resolve_host_builds_ssh_target(sandbox: Sandbox) -> None:
    target_mod = pytest.importorskip("safetunnel.ssh.target")  # the SSH layer, after integration
    from safetunnel.hosts.resolve import resolve_host

    assert resolve_host(None, Config()) is None
    target = resolve_host("u@h.example:2200", Config())
    assert isinstance(target, target_mod.SSHTarget)
    assert (target.user, target.hostname, target.port) == ("u", "h.example", 2200)
