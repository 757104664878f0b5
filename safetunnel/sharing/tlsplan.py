"""Which certificate a share serves, and what the confirmation says about it.

A share made with ``--tls-cert`` serves the user's certificate (loaded in pre-flight). Any other
TLS share gets one made for it once the SSH host is known, since its names go into the
certificate: the host name the share's link points at, and the name recipients were given for
the SSH host (an ssh_config alias or the typed host), when that differs.
"""

from __future__ import annotations

from datetime import timedelta

from safetunnel.sharing.clientlines import host_for_others
from safetunnel.sharing.plan import Plan
from safetunnel.sharing.summary import TlsShown
from safetunnel.sharing.tlscert import BACKDATE, TlsIdentity, make_identity
from safetunnel.ssh.target import SSHTarget
from safetunnel.timefmt import utc_now


def share_identity(plan: Plan, target: SSHTarget, *, make_key: bool) -> TlsIdentity | None:
    """The certificate to serve; None without TLS, or when ``make_key`` is False."""
    if not plan.tls or plan.own_tls is not None:
        return plan.own_tls
    if not make_key:
        return None
    fallback = (target.user, target.hostname, target.port)
    named, _ = host_for_others(target.destination, fallback)
    # Valid for as long as the share could run: `extend` may move its end up to max_ttl from
    # the start, and the key dies with this process anyway.
    not_after = utc_now() + timedelta(seconds=plan.max_ttl) + BACKDATE
    return make_identity([target.hostname, named.rpartition("@")[2]], not_after)


def shown(plan: Plan, identity: TlsIdentity | None) -> TlsShown | None:
    """What the confirmation and the started block say about TLS (None: no TLS)."""
    if not plan.tls:
        return None
    if identity is None:  # made later, by the detached share (--background)
        return TlsShown(pin=None, made=True, subject="", names=(), not_after=None)
    made = plan.own_tls is None
    return TlsShown(identity.pin, made, identity.subject, identity.names, identity.not_after)
