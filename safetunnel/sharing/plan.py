"""Pre-flight's plan: what a share will do, decided before any network.

The request is checked, the config read, the local service probed, the risks weighed, the SSH
target and engine chosen, and a certificate the user brought loaded: everything that can refuse
a share without touching the network refuses it here, so nothing is left to clean up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from safetunnel.durations import parse_duration
from safetunnel.errors import UsageError
from safetunnel.hosts.config import Config, load_config, validate_ttl
from safetunnel.hosts.resolve import resolve_host
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.records import Registry
from safetunnel.sharing import preflight
from safetunnel.sharing.acknowledge import check_confirm_port, no_terminal, typed_needed
from safetunnel.sharing.engines import Engine, choose_engine
from safetunnel.sharing.request import ShareRequest, check_request, serves_tls
from safetunnel.sharing.tlscert import TlsIdentity, load_identity
from safetunnel.ssh.target import SSHTarget


@dataclass(frozen=True)
class Plan:
    """What pre-flight decided, before any network: carried to the confirmation and the tunnel."""

    service: preflight.ServiceInfo
    ttl: int
    risks: tuple[preflight.Risk, ...]
    typed: bool
    max_ttl: int
    target: SSHTarget | None  # None: the built-in gateway
    engine: Engine
    registry: Registry
    audit: AuditLog
    tls: bool  # the remote side speaks TLS
    own_tls: TlsIdentity | None  # the user's certificate (--tls-cert); None: one is made


def make_plan(request: ShareRequest, *, interactive: bool, preconfirmed: bool) -> Plan:
    check_request(request)
    config = load_config()
    ttl = request.ttl if request.ttl is not None else parse_duration(config.default_ttl)
    validate_ttl(ttl, config)
    registry = Registry()  # refuses a foreign or group-writable state dir before any network
    service = preflight.probe_local(*preflight.parse_local(str(request.local)))
    tls = serves_tls(request)
    own = None
    if request.tls_cert is not None and request.tls_key is not None:  # both or neither: checked
        own = load_identity(request.tls_cert, request.tls_key)
    risks = preflight.assess_risks(
        service.port,
        request.public,
        ttl,
        service.exposed,
        service_kind=service.service_kind,
        tls=tls,
    )
    check_confirm_port(request.confirm_port, service.port)
    typed = not preconfirmed and typed_needed(
        risks, yes=request.yes, public=request.public, confirm_port=request.confirm_port
    )
    if not interactive and not preconfirmed and (typed or not request.yes):
        raise no_terminal(risks, typed, service.port)
    target = target_of(request, config)
    return Plan(
        service=service,
        ttl=ttl,
        risks=tuple(risks),
        typed=typed,
        max_ttl=config.max_ttl_seconds(),
        target=target,
        engine=choose_engine(request.engine, config, builtin=target is None),
        registry=registry,
        audit=AuditLog(),
        tls=tls,
        own_tls=own,
    )


def target_of(request: ShareRequest, config: Config) -> SSHTarget | None:
    target = None if request.builtin_gateway else resolve_host(request.host, config)
    if target is None and request.public:
        raise UsageError(
            "the built-in gateway listens on this machine's loopback only",
            hint="--public needs an SSH host: pass --host or set a default host.",
        )
    if target is not None and request.identity:
        target = dataclasses.replace(target, identity_files=(request.identity,))
    return target
