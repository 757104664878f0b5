"""JSON read from outside this process: a ticket, a record, an audit line, a peer's message.

``json.loads`` rejects malformed text with ValueError, which every reader handles, but text
nested deeply enough (a thousand ``[`` fit in a ticket) makes its parser raise RecursionError
instead, which none of them expected: a ticket from someone else then ended ``connect`` with a
traceback, and one bad line stopped ``log``.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """``json.loads``, failing only with ValueError (UnicodeDecodeError is one too)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
