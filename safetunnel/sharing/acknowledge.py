"""Which answer a share still needs, and what replaces it on the command line. Pure.

A risky share needs the shared port typed at a prompt. ``--confirm-port PORT`` is that same
answer given in advance, so a script can start a risky share (with ``--yes`` for the y/N
question) without widening anything; ``--yes --public`` replaces it too, as it always has, since
going public is then asked for explicitly, except for a public share without TLS: there the
token crosses networks in clear text, and ``--public --no-tls`` in a script is too easily a
copy-paste accident. Nothing here replaces host-key trust.
"""

from __future__ import annotations

from collections.abc import Sequence

from safetunnel.errors import NotConfirmed
from safetunnel.sharing.preflight import NO_TLS, Risk, needs_typed


def check_confirm_port(confirm_port: int | None, port: int) -> None:
    """A ``--confirm-port`` that is not the shared port is a wrong typed answer: not confirmed."""
    if confirm_port is not None and confirm_port != port:
        raise NotConfirmed(
            f"--confirm-port {confirm_port} is not the shared port {port}; nothing was shared",
            hint=f"Pass --confirm-port {port} to acknowledge sharing port {port}.",
        )


def typed_needed(
    risks: Sequence[Risk], *, yes: bool, public: bool, confirm_port: int | None
) -> bool:
    """True when the port must still be typed at a prompt (the risks were not acknowledged)."""
    clear_text = any(risk.code == NO_TLS for risk in risks)
    acknowledged = confirm_port is not None or (yes and public and not clear_text)
    return needs_typed(risks) and not acknowledged


def no_terminal(risks: Sequence[Risk], typed: bool, port: int) -> NotConfirmed:
    """The refusal when an answer is needed and there is nobody to ask: says which and why."""
    if not typed:
        return NotConfirmed(
            "confirmation needed but there is no terminal to ask on",
            hint="Run it in a terminal, or pass --yes.",
        )
    listed = "; ".join(risk.message for risk in risks if risk.severity == "risk")
    return NotConfirmed(
        f"this share is risky and needs a typed confirmation, but there is no terminal to ask "
        f"on: {listed}",
        hint=f"Run it in a terminal, or acknowledge the risks with --yes --confirm-port {port}.",
    )
