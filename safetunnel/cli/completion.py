"""Shell completion values: tunnel ids (kill, status, log, extend) and hosts (``--host``).

Completion runs on every Tab, so it only reads: records are listed by file name (no pruning, no
audit line), and any error means no suggestions rather than a traceback in the user's shell.
"""

from __future__ import annotations

import contextlib

import click
from click.shell_completion import CompletionItem


def complete_tunnel_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The ids of the tunnels that have a record (running, or not yet pruned)."""
    from safetunnel.registry.records import Registry

    with contextlib.suppress(Exception):
        ids = sorted(path.stem for path in Registry().dir.glob("st-*.json"))
        return [CompletionItem(i) for i in ids if i.startswith(incomplete)]
    return []


def complete_hosts(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Saved profiles first, then literal ``Host`` aliases of ~/.ssh/config."""
    from safetunnel.hosts.config import load_config
    from safetunnel.hosts.resolve import ssh_aliases

    names: list[tuple[str, str]] = []
    with contextlib.suppress(Exception):
        names += [(name, "saved profile") for name in sorted(load_config().hosts)]
    with contextlib.suppress(Exception):
        names += [(alias, "~/.ssh/config alias") for alias in ssh_aliases()]
    seen: set[str] = set()
    items: list[CompletionItem] = []
    for name, kind in names:
        if name.startswith(incomplete) and name not in seen:
            seen.add(name)
            items.append(CompletionItem(name, help=kind))
    return items
