"""The live status line counts bytes like `safetunnel status`: in KiB, from one formatter."""

from __future__ import annotations

from safetunnel.cli.console import status_text
from safetunnel.cli.render import human_bytes


def test_status_line_uses_kib_like_status() -> None:
    snapshot = {"connections": 2, "bytes_in": 2048, "bytes_out": 1536 * 1024}
    line = status_text(90, snapshot)
    assert line == "1m 30s left · 2 open · in 2.0 KiB · out 1.5 MiB · Ctrl-C stops"
    assert human_bytes(2048) in line
