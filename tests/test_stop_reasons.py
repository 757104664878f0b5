"""Stop reasons: the published spellings, the exit code and the human text of each."""

from __future__ import annotations

import json

from safetunnel.cli.console import event_text
from safetunnel.sharing.events import Stopped
from safetunnel.sharing.reasons import StopReason


def test_the_json_values_are_the_published_ones() -> None:
    assert [r.value for r in StopReason] == [
        "ttl",
        "idle",
        "killed",
        "signal",
        "ssh-lost",
        "max-failures",
        "error",
        "audit-failed",
    ]
    assert json.dumps({"reason": StopReason.SSH_LOST}) == '{"reason": "ssh-lost"}'


def test_exit_codes_success_for_planned_ends_eight_for_a_lost_connection() -> None:
    codes = {r.value: r.exit_code for r in StopReason}
    assert codes == {
        "ttl": 0,
        "idle": 0,
        "killed": 0,
        "signal": 0,
        "ssh-lost": 8,
        "max-failures": 1,
        "error": 1,
        "audit-failed": 1,
    }


def test_the_console_says_why_in_words() -> None:
    for reason in StopReason:
        line = event_text(Stopped("st-abc123", reason, "2026-01-01T00:00:00Z"), None)
        assert line == f"Tunnel st-abc123 stopped because {reason.text}."
        assert reason.text and reason.value not in {"", None}
