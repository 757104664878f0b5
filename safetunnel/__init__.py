"""safetunnel: share a local service through SSH, confirmed, token-gated and time-limited.

Python API::

    import safetunnel

    with safetunnel.share(62893, ttl="30m") as tunnel:
        print(tunnel.remote_port, tunnel.token, tunnel.expires_at)
    print(tunnel.stop_reason)  # a safetunnel.StopReason: "killed" here
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safetunnel.errors import SafetunnelError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from safetunnel.sharing.reasons import StopReason
    from safetunnel.sharing.tunnel import Tunnel

__all__ = ["SafetunnelError", "StopReason", "Tunnel", "__version__", "share"]


def share(port: int | str, **options: Any) -> Tunnel:
    """Start a share; see :func:`safetunnel.api.share` for the options."""
    # Imported lazily so that `import safetunnel` (and `safetunnel list`) stays free of paramiko.
    from safetunnel.api import share as _share

    return _share(port, **options)


def __getattr__(name: str) -> Any:
    if name == "Tunnel":
        from safetunnel.sharing.tunnel import Tunnel

        return Tunnel
    if name == "StopReason":
        from safetunnel.sharing.reasons import StopReason

        return StopReason
    raise AttributeError(name)
