"""The ``share`` flow: pre-flight, SSH, confirmation, forward. No printing or prompting here.

The caller supplies a :class:`ShareUI`: the CLI's asks the user, the Python API's never prompts
(its caller has confirmed). While a share is prepared one ``ExitStack`` owns all it opened (the
built-in gateway, the SSH session, the token file's removal), so a refused share leaves nothing
behind; a share that starts hands the whole stack to its :class:`Tunnel` in one step, so each
resource has exactly one owner and is closed once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from safetunnel import tokens
from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND
from safetunnel.errors import ForwardRefused, NotConfirmed
from safetunnel.registry.publication import Bookkeeper
from safetunnel.registry.records import new_tunnel_id
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing.connections import builtin_gateway_limits
from safetunnel.sharing.connector import Connector
from safetunnel.sharing.engines import ShareSession
from safetunnel.sharing.observers import TunnelObserver
from safetunnel.sharing.plan import Plan, make_plan
from safetunnel.sharing.request import ShareRequest, check_request
from safetunnel.sharing.summary import ShareSummary
from safetunnel.sharing.tlscert import TlsIdentity
from safetunnel.sharing.tlsplan import share_identity, shown
from safetunnel.sharing.tokenfile import TicketFile, ticket_path, write_token_file
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig, reach_of
from safetunnel.ssh.client import HostKeyPrompt, open_session
from safetunnel.ssh.gateway import start_builtin
from safetunnel.ssh.target import SSHTarget
from safetunnel.timefmt import utc_now

__all__ = ["ShareRequest", "ShareUI", "check_request", "confirm_share", "open_share"]

BUILTIN_LABEL = "built-in gateway"


class ShareUI(Protocol):
    """The questions a share may need answered; implemented by the CLI and the Python API."""

    @property
    def interactive(self) -> bool: ...
    @property
    def preconfirmed(self) -> bool: ...
    def trust_host_key(self, target: SSHTarget, algorithm: str, fingerprint: str) -> bool: ...
    def confirm(self, summary: ShareSummary, typed: bool) -> bool: ...
    def show(self, summary: ShareSummary) -> None:
        """The confirmation block without its question (``--yes`` answered it)."""

    def auth_source(self, target: SSHTarget) -> KeyringAuthSource: ...
    def observer(self, summary: ShareSummary) -> TunnelObserver[Tunnel] | None:
        """Who shows the tunnel's events (the confirmed summary in hand), if anyone."""


def open_share(request: ShareRequest, ui: ShareUI) -> Tunnel:
    """Run the whole share flow and return a started tunnel. Raises SafetunnelError subclasses."""
    with _prepared(request, ui) as prepared:
        return _start(prepared, request, ui)


def confirm_share(request: ShareRequest, ui: ShareUI) -> ShareSummary:
    """Everything up to and including the confirmation, then close again (``--background``).

    The foreground does the talking (host-key trust, prompts); the detached process it starts
    then runs the share with the answers already given.
    """
    with _prepared(request, ui, make_key=False) as prepared:
        return prepared.summary


@dataclass(frozen=True)
class _Prepared:
    """A confirmed share that owns its open resources (``stack``) until it starts."""

    plan: Plan
    session: ShareSession
    summary: ShareSummary
    typed_confirmation: bool
    stack: contextlib.ExitStack
    connector: Connector | None  # None: the built-in gateway, which has nothing to reconnect
    tls: TlsIdentity | None


@contextlib.contextmanager
def _prepared(request: ShareRequest, ui: ShareUI, *, make_key: bool = True) -> Iterator[_Prepared]:
    """``make_key`` False: a certificate would be made only to be thrown away (``--background``
    confirms here, and its detached share makes its own): the confirmation says so."""
    plan = make_plan(request, interactive=ui.interactive, preconfirmed=ui.preconfirmed)
    with contextlib.ExitStack() as stack:
        connector = _connector(plan, request, ui)
        session = _connect(stack, request, ui, connector)
        tls = share_identity(plan, session.target, make_key=make_key)
        summary = dataclasses.replace(_summary(request, session, plan), tls=shown(plan, tls))
        needs_answer = not ui.preconfirmed and (plan.typed or not request.yes)
        if needs_answer and not ui.confirm(summary, plan.typed):
            raise NotConfirmed("not confirmed; nothing was shared")
        if not needs_answer and not ui.preconfirmed:
            ui.show(summary)  # --yes skips the question, not what is about to be exposed
        typed = needs_answer and plan.typed
        yield _Prepared(plan, session, summary, typed, stack, connector, tls)


def _connector(plan: Plan, request: ShareRequest, ui: ShareUI) -> Connector | None:
    target = plan.target
    if target is None:
        return None
    auth = ui.auth_source(target)  # both engines: it also keeps what was typed
    return Connector(target, plan.engine, request.known_hosts, request.keepalive, auth)


def _connect(
    stack: contextlib.ExitStack, request: ShareRequest, ui: ShareUI, connector: Connector | None
) -> ShareSession:
    """Open the SSH session (to the built-in gateway, started first, when there is no target)."""
    if connector is None:
        return _open_builtin(stack, request)
    prompt: HostKeyPrompt | None = ui.trust_host_key if ui.interactive else None
    opened = connector.open(prompt)
    stack.callback(opened.close)
    return opened


def _open_builtin(stack: contextlib.ExitStack, request: ShareRequest) -> ShareSession:
    gateway, client_key = start_builtin(limits=builtin_gateway_limits(request.max_connections))
    stack.callback(gateway.close)
    builtin = SSHTarget(
        hostname="127.0.0.1", port=gateway.address[1], user=getpass.getuser(), label=BUILTIN_LABEL
    )
    session = open_session(
        builtin,
        hostkeys=None,
        on_unknown_key=None,
        auth=None,
        client_key=client_key,
        expected_key=gateway.host_key,
    )
    stack.callback(session.close)
    return session


def _summary(request: ShareRequest, session: ShareSession, plan: Plan) -> ShareSummary:
    target = session.target
    return ShareSummary(
        service=plan.service,
        ssh_user=target.user,
        ssh_hostname=target.hostname,
        ssh_port=target.port,
        via_builtin=plan.target is None,
        host_key_state=session.host_key_state,
        fingerprint=session.fingerprint,
        key_type=session.key_type,
        ssh_destination=target.destination,
        ttl_seconds=plan.ttl,
        expires_at=utc_now() + timedelta(seconds=plan.ttl),
        remote_bind=PUBLIC_BIND if request.public else LOOPBACK_BIND,
        remote_port=request.remote_port,
        protocol=request.protocol,
        idle_seconds=request.idle,
        max_connections=request.max_connections,
        risks=plan.risks,
        # Absolute: the printed command lines read it, perhaps from another directory.
        token_file=os.path.abspath(request.token_file) if request.token_file else None,
    )


def _start(prepared: _Prepared, request: ShareRequest, ui: ShareUI) -> Tunnel:
    """Make the tunnel, hand it the prepared resources, and start it."""
    token = tokens.generate()
    observers: list[TunnelObserver[Tunnel]] = []
    if prepared.summary.token_file:
        path = Path(prepared.summary.token_file)
        write_token_file(prepared.stack, path, token, keep=request.keep_token_file)
        observers.append(
            TicketFile(prepared.stack, ticket_path(path), keep=request.keep_token_file)
        )
    config = _tunnel_config(request, prepared)
    _audit_confirmed(prepared, config, request)
    shown_by = ui.observer(prepared.summary)
    # The publication comes first, so it is closed last: see safetunnel.sharing.observers.
    books = Bookkeeper(prepared.plan.registry, prepared.plan.audit, log_path=request.log_path)
    observers.insert(0, books)
    observers += [] if shown_by is None else [shown_by]
    resources = prepared.stack.pop_all()  # from here on the tunnel owns them
    connector = prepared.connector if request.reconnect else None
    tunnel = Tunnel(
        prepared.session,
        config,
        token,
        observers=observers,
        resources=resources,
        reconnect=None if connector is None else connector.reopen,
    )
    try:
        tunnel.start()
    except ForwardRefused as err:
        if prepared.plan.target is not None:
            raise
        # The session's own message names a throwaway in-process host the user never saw.
        raise ForwardRefused(
            f"the built-in gateway could not listen on 127.0.0.1:{request.remote_port}",
            hint="That port is probably in use on this machine; --remote-port 0 picks a free one.",
        ) from err
    return tunnel


def _tunnel_config(request: ShareRequest, prepared: _Prepared) -> TunnelConfig:
    summary = prepared.summary
    return TunnelConfig(
        local=(summary.service.host, summary.service.port),
        ttl=prepared.plan.ttl,
        ssh_host=BUILTIN_LABEL if summary.via_builtin else summary.ssh_display,
        public_host=summary.ssh_hostname,
        idle=request.idle,
        public=request.public,
        remote_port=request.remote_port,
        protocol=request.protocol,
        max_connections=request.max_connections,
        max_failures=request.max_failures,
        keepalive=request.keepalive,
        tunnel_id=new_tunnel_id(),
        max_ttl=prepared.plan.max_ttl,
        show_token=request.token_file is None,
        engine=prepared.plan.engine,
        reach=reach_of(summary),
        tls=prepared.tls,
        token_files=_removed_at_end(request, summary.token_file),
    )


def _removed_at_end(request: ShareRequest, token_file: str | None) -> tuple[str, ...]:
    if token_file is None or request.keep_token_file:
        return ()
    return (token_file, str(ticket_path(Path(token_file))))


def _audit_confirmed(prepared: _Prepared, config: TunnelConfig, request: ShareRequest) -> None:
    prepared.plan.audit.write(
        "confirmed",
        config.tunnel_id,
        local=prepared.summary.service.address,
        ssh_host=config.ssh_host,
        remote_bind=config.remote_bind,
        remote_port=config.remote_port,
        ttl=config.ttl,
        idle=config.idle,
        protocol=config.protocol,
        risks=[risk.code for risk in prepared.plan.risks],
        typed_confirmation=prepared.typed_confirmation,
        confirm_port=request.confirm_port is not None,
        tls=prepared.tls is not None,
    )
