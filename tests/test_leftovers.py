"""Removing a killed share's token and ticket files: only files that still hold its token."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from safetunnel import tokens
from safetunnel.registry.leftovers import remove_token_files
from safetunnel.tickets import Ticket


def ticket_of(token: str) -> str:
    return Ticket(
        ssh_host="h.example",
        ssh_port=22,
        host_key="SHA256:" + "A" * 43,
        key_type="ssh-ed25519",
        remote_bind="127.0.0.1",
        remote_port=40000,
        protocol="http",
        expires_at=datetime.now(UTC) - timedelta(hours=1),  # long over: still recognised
        token=token,
    ).encode()


def test_only_files_that_hold_the_shares_token_are_removed(tmp_path: Path) -> None:
    token, other = tokens.generate(), tokens.generate()
    prefix = tokens.hash_prefix(tokens.hash_token(token))
    ours, our_ticket = tmp_path / "t", tmp_path / "t.ticket"
    ours.write_text(token + "\n")
    our_ticket.write_text(ticket_of(token) + "\n")
    theirs, their_ticket, notes = tmp_path / "u", tmp_path / "u.ticket", tmp_path / "notes"
    theirs.write_text(other + "\n")
    their_ticket.write_text(ticket_of(other) + "\n")
    notes.write_text("my notes\n")
    link = tmp_path / "link"
    os.symlink(ours, link)
    paths = [ours, our_ticket, theirs, their_ticket, notes, link, tmp_path / "gone"]
    remove_token_files([str(path) for path in paths[::-1]], prefix)  # the link first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "notes", "u", "u.ticket"]
