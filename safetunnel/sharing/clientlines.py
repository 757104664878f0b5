"""Pieces of the copy-paste lines a share prints for the people it is shared with. Pure.

``ssh_forward_line`` names the SSH host the way the sharer did (the ssh_config alias, or the typed
``[user@]host`` and port), never the resolved address with the sharer's local user name, which
would be wrong on every other machine. ``NC_FREE_RELAY`` does what ``nc HOST PORT`` does in the
raw-TCP line, for machines without ``nc``: python3 is on nearly every server, and the token
still reaches it through the pipe, never through its argv.
"""

from __future__ import annotations

import re
import shlex

NC_FREE_RELAY = (
    "python3 -c 'import socket,sys,threading as t;"
    "s=socket.create_connection((sys.argv[1],int(sys.argv[2])));"
    "i,o=sys.stdin.buffer,sys.stdout.buffer;"
    't.Thread(target=lambda:[s.sendall(d)for d in iter(lambda:i.read1(65536),b"")]'
    "+[s.shutdown(1)],daemon=1).start();"
    '[(o.write(d),o.flush())for d in iter(lambda:s.recv(65536),b"")]\''
)

_URI = re.compile(
    r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?"
)


def ssh_forward_line(forward: str, destination: str, fallback: tuple[str, str, int]) -> str:
    """``ssh -N [-p PORT] -L FORWARD [user@]host`` (or ``… -L FORWARD ALIAS``).

    ``destination`` is what the sharer's own ``ssh`` was given: an alias, or an ``ssh://`` URI
    holding only the user and port that were typed. Empty (a target made without one):
    ``fallback``, the resolved (user, host, port).
    """
    where, port = host_for_others(destination, fallback)
    alias = bool(destination) and _URI.fullmatch(destination) is None
    return _line(forward, shlex.quote(where) if alias else where, port)


def host_for_others(destination: str, fallback: tuple[str, str, int]) -> tuple[str, str | None]:
    """The SSH host as the sharer named it, for other machines: (``[user@]host`` or the alias,
    the typed port or None). Tickets carry the same name as the ``ssh -L`` line."""
    match = _URI.fullmatch(destination)
    if match is not None:
        user = f"{match['user']}@" if match["user"] else ""
        return f"{user}{match['host'].strip('[]')}", match["port"]
    if destination:  # an ssh_config alias, as the sharer named it
        return destination, None
    user, host, port = fallback
    return f"{user}@{host}", str(port)


def _line(forward: str, where: str, port: str | None) -> str:
    port_opt = f"-p {port} " if port and port != "22" else ""
    return f"ssh -N {port_opt}-L {forward} {where}"
