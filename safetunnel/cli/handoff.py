"""The two ends of ``share --background``'s hand-off of typed secrets.

The foreground keeps the secrets the user typed while it logged in (:class:`RememberingUI`);
the detached child gets them on its stdin pipe and offers them before anything else
(:class:`HandedChildUI`), so it never needs a terminal.
"""

from __future__ import annotations

from safetunnel.cli.console import BackgroundChildUI, ConsoleUI
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.target import SSHTarget


class RememberingUI(ConsoleUI):
    """The foreground of ``--background``: asks as usual, and keeps what was typed."""

    def __init__(self, as_json: bool) -> None:
        super().__init__(as_json)
        self._sources: list[KeyringAuthSource] = []

    def auth_source(self, target: SSHTarget) -> KeyringAuthSource:
        source = super().auth_source(target)
        self._sources.append(source)
        return source

    def typed_secrets(self) -> dict[SecretName, str]:
        typed: dict[SecretName, str] = {}
        for source in self._sources:
            typed.update(source.typed_secrets())
        return typed


class HandedChildUI(BackgroundChildUI):
    """The detached child: never asks; offers the handed secrets first."""

    def __init__(self, ready_fd: int, handed: dict[SecretName, str]) -> None:
        super().__init__(ready_fd)
        self._handed = handed

    def auth_source(self, target: SSHTarget) -> KeyringAuthSource:
        source = super().auth_source(target)
        source.remember(self._handed)
        return source
