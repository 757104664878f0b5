"""The one error tree of safetunnel.

Every error that reaches the user is a :class:`SafetunnelError`. Each class carries its exit code
(part of the CLI's interface: scripts branch on it, so a code never changes meaning) and a hint
that says what to do next; the CLI's single error boundary prints ``Error: <message>`` and
``hint: <hint>`` and exits with the code.
"""

from __future__ import annotations


class SafetunnelError(Exception):
    """Base class: an error with an exit code and an optional hint."""

    exit_code: int = 1
    default_hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class ConfigError(SafetunnelError):
    """Bad configuration, profile or argument value found after click parsing."""


class UsageError(ConfigError):
    """A value given on the command line cannot be used: an unknown host, a TTL over max_ttl.

    Exit 2, as click's own usage errors: a script learns that retrying the same command is
    pointless, unlike a failure of the network or the server."""

    exit_code = 2


class StateError(SafetunnelError):
    """The state directory or a record is unusable (wrong owner, wrong mode, torn file)."""


class TunnelNotFound(SafetunnelError):
    """No live tunnel with that id."""

    default_hint = "Run `safetunnel list` to see the live tunnels."


class CredentialError(SafetunnelError):
    """The keyring or a stored secret could not be used."""


class NotConfirmed(SafetunnelError):
    """The user declined, or a confirmation was needed but there is no TTY."""

    exit_code = 3


class HostKeyError(SafetunnelError):
    """The SSH host key is unknown (non-interactive) or has changed."""

    exit_code = 4


class HostKeyUnknown(HostKeyError):
    """The host key is not pinned and nobody could be asked."""


class HostKeyChanged(HostKeyError):
    """The host key differs from the pinned one: possibly a man in the middle."""


class AuthFailed(SafetunnelError):
    """SSH authentication failed."""

    exit_code = 5


class ForwardRefused(SafetunnelError):
    """The server refused the remote forward, or widened the bind without --public."""

    exit_code = 6


class ForwardWidened(ForwardRefused):
    """The server bound the forward on every interface although one address was asked for.

    Apart from a plain refusal because a refusal can be the old session still holding the
    port for a moment, while a widened bind is the server's configuration and never passes."""


class ForwardNarrowed(ForwardRefused):
    """The server binds remote forwards on its loopback only, so a public bind is not possible.

    Never passes on a retry either: it is the server's configuration, like a widened bind."""


class NothingListening(SafetunnelError):
    """No service accepts connections on the local port."""

    exit_code = 7


class ConnectionLost(SafetunnelError):
    """The SSH connection was lost and not recovered."""

    exit_code = 8


class SSHError(SafetunnelError):
    """Any other SSH-level failure (connect refused, timeout, protocol error)."""
