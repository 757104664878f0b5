"""Text layout shared by the confirmation and "started" blocks: labelled rows that wrap under
their label, copy-paste lines that never wrap, and warnings. Pure."""

from __future__ import annotations

import textwrap

from safetunnel.durations import format_duration

WIDTH = 100
LABEL = 13  # label column, so values line up and wrapped lines stay readable


# How much of a value from outside (another user's process name) a block shows.
OUTSIDE_MAX = 64


def printable(value: str) -> str:
    """A value someone else chose, fit for the block: anything a terminal would act on (escape
    sequences, a newline that starts a forged line) becomes "?", and a long one is cut."""
    text = "".join(c if c.isprintable() else "?" for c in value)
    return text if len(text) <= OUTSIDE_MAX else text[: OUTSIDE_MAX - 1] + "…"


def row(label: str, text: str) -> str:
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=f"  {label:<{LABEL - 2}}",
        subsequent_indent=" " * LABEL,
        break_on_hyphens=False,
    )


def cmd(label: str, command: str) -> str:
    """A copy-paste line: never wrapped, a wrapped command breaks when pasted."""
    return f"  {label:<{LABEL - 2}}{command}"


def warn(mark: str, text: str) -> str:
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=f"  {mark} ",
        subsequent_indent=" " * (len(mark) + 3),
        break_on_hyphens=False,
    )


def idle_text(idle_seconds: int | None) -> str:
    if idle_seconds is None:
        return "no idle limit"
    return f"stops after {format_duration(idle_seconds)} without connections"
