"""The ``share`` flow: pre-flight, SSH, confirmation, forward. No printing or prompting here.

The caller supplies a :class:`ShareUI`: the CLI's asks the user, the Python API's never prompts
(its caller has confirmed). Everything opened here is closed here if a later step fails, so a
refused share leaves nothing behind: no session, no gateway, no token file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from safetunnel import paths, tokens
from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND
from safetunnel.durations import parse_duration
from safetunnel.errors import ConfigError, ForwardRefused, NotConfirmed
from safetunnel.fsutil import create_exclusive
from safetunnel.gate.policy import GateProtocol
from safetunnel.hosts.config import load_config, resolve_host, validate_ttl
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.publication import Bookkeeper
from safetunnel.registry.records import Registry, new_tunnel_id
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing.preflight import (
    Risk,
    ServiceInfo,
    assess_risks,
    needs_typed,
    parse_local,
    probe_local,
)
from safetunnel.sharing.summary import ShareSummary
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.client import HostKeyPrompt, SSHSession, open_session
from safetunnel.ssh.gateway import Gateway, start_builtin
from safetunnel.ssh.hostkeys import HostKeyStore
from safetunnel.ssh.target import SSHTarget
from safetunnel.timefmt import utc_now

DEFAULT_TTL = 30 * 60


@dataclass
class ShareRequest:
    """What the user asked for, as parsed by click (or passed to the Python API)."""

    local: str | int
    host: str | None = None
    ttl: int | None = None
    idle: int | None = None
    remote_port: int = 0
    public: bool = False
    protocol: GateProtocol = "auto"
    yes: bool = False
    identity: str | None = None
    known_hosts: str | None = None
    token_file: str | None = None
    max_connections: int = 256
    max_failures: int | None = None
    keepalive: float = 10.0
    builtin_gateway: bool = False  # force the built-in gateway (demo), whatever the default host
    log_path: str | None = None  # --background: where the detached tunnel's output goes


class ShareUI(Protocol):
    """The questions a share may need answered; implemented by the CLI and the Python API."""

    @property
    def interactive(self) -> bool: ...
    @property
    def preconfirmed(self) -> bool: ...
    def trust_host_key(self, target: SSHTarget, algorithm: str, fingerprint: str) -> bool: ...
    def confirm(self, summary: ShareSummary, typed: bool) -> bool: ...
    def auth_source(self, target: SSHTarget) -> KeyringAuthSource: ...
    def attach(self, tunnel: Tunnel, summary: ShareSummary) -> None: ...


def open_share(request: ShareRequest, ui: ShareUI) -> Tunnel:
    """Run the whole share flow and return a started tunnel. Raises SafetunnelError subclasses."""
    tunnel = _run(request, ui, start=True)
    assert isinstance(tunnel, Tunnel)
    return tunnel


def confirm_share(request: ShareRequest, ui: ShareUI) -> ShareSummary:
    """Everything up to and including the confirmation, then close again (``--background``).

    The foreground does the talking (host-key trust, prompts); the detached process it starts
    then runs the share with the answers already given.
    """
    summary = _run(request, ui, start=False)
    assert isinstance(summary, ShareSummary)
    return summary


def check_request(request: ShareRequest) -> None:
    """Refuse values the CLI's option types would refuse; the Python API has no click."""
    problems = [
        (request.ttl is not None and request.ttl <= 0, "ttl must be a positive duration"),
        (request.idle is not None and request.idle <= 0, "idle must be a positive duration"),
        (not 0 <= request.remote_port <= 65535, "remote_port must be 0-65535 (0: server picks)"),
        (request.max_connections < 1, "max_connections must be at least 1"),
        (
            request.max_failures is not None and request.max_failures < 1,
            "max_failures must be at least 1",
        ),
        (request.keepalive <= 0, "keepalive must be a positive number of seconds"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(message)


def _run(request: ShareRequest, ui: ShareUI, start: bool) -> Tunnel | ShareSummary:
    check_request(request)
    config = load_config()
    ttl = request.ttl if request.ttl is not None else parse_duration(config.default_ttl)
    validate_ttl(ttl, config)
    registry = Registry()  # refuses a foreign or group-writable state dir before any network
    host, port = parse_local(str(request.local))
    service = probe_local(host, port)
    risks = assess_risks(
        port, request.public, ttl, service.exposed, service_kind=service.service_kind
    )
    risky = needs_typed(risks)
    typed = risky and not (request.yes and request.public) and not ui.preconfirmed
    if not ui.interactive and not ui.preconfirmed and (typed or not request.yes):
        raise NotConfirmed(
            "confirmation needed but there is no terminal to ask on",
            hint="Run it in a terminal, or pass --yes (risky shares also need --public)."
            if not typed
            else "Run it in a terminal: this share is risky and needs a typed "
            "confirmation (only --yes together with --public replaces it).",
        )
    target = None if request.builtin_gateway else resolve_host(request.host, config)
    if target is None and request.public:
        raise ConfigError(
            "the built-in gateway listens on this machine's loopback only",
            hint="--public needs an SSH host: pass --host or set a default host.",
        )
    if target is not None and request.identity:
        target = dataclasses.replace(target, identity_files=(request.identity,))
    session, owned = _connect(target, request, ui)
    plan = _Plan(
        service=service,
        ttl=ttl,
        risks=tuple(risks),
        typed=typed,
        max_ttl=config.max_ttl_seconds(),
        registry=registry,
        audit=AuditLog(),
    )
    try:
        result = _confirm_and_start(request, ui, session, owned, plan, start)
    except BaseException:
        _close_all(session, owned)
        raise
    if isinstance(result, ShareSummary):  # confirmation only: the detached share reconnects
        _close_all(session, owned)
    return result


def _close_all(session: SSHSession, owned: list[Gateway]) -> None:
    session.close()
    for resource in owned:
        resource.close()


def _connect(
    target: SSHTarget | None, request: ShareRequest, ui: ShareUI
) -> tuple[SSHSession, list[Gateway]]:
    if target is None:
        gateway, client_key = start_builtin()
        try:
            builtin = SSHTarget(
                hostname="127.0.0.1",
                port=gateway.address[1],
                user=getpass.getuser(),
                label="built-in gateway",
            )
            session = open_session(
                builtin,
                hostkeys=None,
                on_unknown_key=None,
                auth=None,
                client_key=client_key,
                expected_key=gateway.host_key,
            )
        except BaseException:
            gateway.close()
            raise
        return session, [gateway]
    user_known = Path(request.known_hosts) if request.known_hosts else None
    store = HostKeyStore(user_known, paths.own_known_hosts())
    prompt: HostKeyPrompt | None = ui.trust_host_key if ui.interactive else None
    auth = ui.auth_source(target)
    session = open_session(target, hostkeys=store, on_unknown_key=prompt, auth=auth)
    auth.commit()  # a replacement password the user agreed to is stored only once it worked
    return session, []


@dataclass(frozen=True)
class _Plan:
    """What pre-flight decided, carried to the confirmation and the tunnel."""

    service: ServiceInfo
    ttl: int
    risks: tuple[Risk, ...]
    typed: bool
    max_ttl: int
    registry: Registry
    audit: AuditLog


def _confirm_and_start(
    request: ShareRequest,
    ui: ShareUI,
    session: SSHSession,
    owned: list[Gateway],
    plan: _Plan,
    start: bool,
) -> Tunnel | ShareSummary:
    service, ttl = plan.service, plan.ttl
    via_builtin = bool(owned)
    target = session.target
    summary = ShareSummary(
        service=service,
        ssh_user=target.user,
        ssh_hostname=target.hostname,
        ssh_port=target.port,
        via_builtin=via_builtin,
        host_key_state=session.host_key_state,
        fingerprint=session.fingerprint,
        key_type=session.key_type,
        ttl_seconds=ttl,
        expires_at=utc_now() + timedelta(seconds=ttl),
        remote_bind=PUBLIC_BIND if request.public else LOOPBACK_BIND,
        remote_port=request.remote_port,
        protocol=request.protocol,
        idle_seconds=request.idle,
        max_connections=request.max_connections,
        risks=plan.risks,
        token_file=request.token_file,
    )
    needs_answer = not ui.preconfirmed and (plan.typed or not request.yes)
    if needs_answer and not ui.confirm(summary, plan.typed):
        raise NotConfirmed("not confirmed; nothing was shared")
    if not start:
        return summary
    token = tokens.generate()
    token_path = Path(request.token_file) if request.token_file else None
    if token_path is not None:
        _write_token_file(token_path, token)
    tunnel_config = TunnelConfig(
        local=(service.host, service.port),
        ttl=ttl,
        ssh_host="built-in gateway" if via_builtin else summary.ssh_display,
        idle=request.idle,
        public=request.public,
        remote_port=request.remote_port,
        protocol=request.protocol,
        max_connections=request.max_connections,
        max_failures=request.max_failures,
        keepalive=request.keepalive,
        tunnel_id=new_tunnel_id(),
        max_ttl=plan.max_ttl,
        show_token=token_path is None,
    )
    plan.audit.write(
        "confirmed",
        tunnel_config.tunnel_id,
        local=service.address,
        ssh_host=tunnel_config.ssh_host,
        remote_bind=tunnel_config.remote_bind,
        remote_port=request.remote_port,
        ttl=ttl,
        idle=request.idle,
        protocol=request.protocol,
        risks=[risk.code for risk in plan.risks],
        typed_confirmation=needs_answer and plan.typed,
    )
    tunnel = Tunnel(session, tunnel_config, token, owned=list(owned))
    books = Bookkeeper(tunnel, plan.registry, plan.audit, log_path=request.log_path)
    tunnel.own_first(books)  # closed last: the record disappears only when all else is down
    tunnel.add_sink(books.on_event)
    ui.attach(tunnel, summary)
    try:
        tunnel.start(on_up=books.start)
    except BaseException as err:
        if token_path is not None:
            with contextlib.suppress(FileNotFoundError):
                token_path.unlink()
        if via_builtin and isinstance(err, ForwardRefused):
            # The session's own message names a throwaway in-process host the user never saw.
            raise ForwardRefused(
                f"the built-in gateway could not listen on 127.0.0.1:{request.remote_port}",
                hint="That port is probably in use on this machine; --remote-port 0 picks a "
                "free one.",
            ) from err
        raise
    return tunnel


def _write_token_file(path: Path, token: str) -> None:
    try:
        create_exclusive(path, (token + "\n").encode())
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; a token file is never overwritten",
            hint="Choose a new path for --token-file.",
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot create token file {path}: {err.strerror}") from None
