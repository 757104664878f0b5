"""safetunnel: share a local service through SSH, confirmed, token-gated and time-limited."""

from __future__ import annotations

from safetunnel.errors import SafetunnelError

__version__ = "0.1.0"

__all__ = ["SafetunnelError", "__version__"]
