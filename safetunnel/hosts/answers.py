"""Reading the answer to "trust this host key?", as OpenSSH does.

``yes`` or the key's own fingerprint pasted (the check a careful user makes) trusts it; ``no``
or an empty answer (Enter, end of input) declines; anything else asks again, so a typo such as
``y`` neither trusts a key nor ends the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

QUESTION = "Type 'yes' to trust and remember this key (or paste its fingerprint)"
AGAIN = "Please type 'yes', 'no' or the fingerprint"


def read_answer(answer: str, fingerprint: str) -> Literal["trust", "decline", "again"]:
    """What one typed answer means for the key with this ``SHA256:`` fingerprint."""
    text = answer.strip()
    if text == "yes" or (text.startswith("SHA256:") and text.rstrip("=") == fingerprint):
        return "trust"
    if text.lower() in ("", "no"):
        return "decline"
    return "again"


def ask_trust(ask: Callable[[str], str], fingerprint: str) -> bool:
    """Ask until the answer trusts or declines; ``ask(question)`` returns "" at end of input."""
    question = QUESTION
    while (decision := read_answer(ask(question), fingerprint)) == "again":
        question = AGAIN
    return decision == "trust"
