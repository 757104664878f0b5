"""A ``--token-file`` lives as long as its share: a token of an ended share left on disk is one
more copy of a secret for a backup, a sync tool or a later reader to pick up, with nothing gained.

The file goes whichever way the share ends (TTL, ``safetunnel kill``, a signal, an error after
start) unless the user asked to keep it with ``--keep-token-file``; a file that is no longer the
one the share wrote (the user replaced it) is never removed.
"""

from __future__ import annotations

import signal
import socket
import stat
from pathlib import Path

import pytest
from conftest import Sandbox
from e2e import E2E, stop
from services import Service, echo, http_keepalive

from safetunnel.api import _ApiUI
from safetunnel.errors import ConfigError, ForwardRefused
from safetunnel.sharing.flow import open_share
from safetunnel.sharing.observers import TunnelObserver
from safetunnel.sharing.request import ShareRequest
from safetunnel.sharing.summary import ShareSummary
from safetunnel.sharing.tunnel import Tunnel


@pytest.mark.parametrize("end", ["ttl", "kill", "signal"])
def test_the_token_file_is_removed_when_the_share_ends(e2e: E2E, tmp_path: Path, end: str) -> None:
    service = e2e.service(http_keepalive)
    token_file = tmp_path / "token"
    e2e.token_files.append(token_file)
    proc = e2e.share(
        service.port, "--token-file", str(token_file), ttl="2s" if end == "ttl" else "30s"
    )
    proc.started()
    e2e.tokens.append(token_file.read_text().strip())
    if end == "kill":
        code = stop(proc, e2e.env)
    else:
        if end == "signal":
            proc.proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0, proc.stderr
    assert proc.next_event("stopped", 5)["reason"] == {"kill": "killed"}.get(end, end)
    assert not token_file.exists(), f"the token file outlived the share ended by {end}"


def test_keep_token_file_keeps_it_private(e2e: E2E, tmp_path: Path) -> None:
    service = e2e.service(http_keepalive)
    token_file = tmp_path / "token"
    e2e.token_files.append(token_file)
    proc = e2e.share(service.port, "--token-file", str(token_file), "--keep-token-file", ttl="30s")
    proc.started()
    token = token_file.read_text().strip()
    e2e.tokens.append(token)
    assert stop(proc, e2e.env) == 0
    assert token_file.read_text() == token + "\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_keep_token_file_without_a_token_file_is_a_usage_error(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    out = e2e.run("share", str(service.port), "--ttl", "30s", "--yes", "--keep-token-file")
    assert out.returncode == 2, out.stderr
    assert "--keep-token-file" in out.stderr and "--token-file" in out.stderr
    with pytest.raises(ConfigError, match="token_file"):
        open_share(ShareRequest(local=service.port, keep_token_file=True), _ApiUI())


# -- in process, over the built-in gateway -------------------------------------------------------


def builtin_request(service: Service, token_file: Path, **changes: object) -> ShareRequest:
    return ShareRequest(
        local=service.port,
        ttl=30,
        yes=True,
        token_file=str(token_file),
        builtin_gateway=True,
        **changes,  # type: ignore[arg-type]
    )


class FailingObserver:
    """An observer whose ``started`` raises: an error after the forward is up."""

    def started(self, tunnel: Tunnel) -> None:
        raise RuntimeError("the observer broke")

    def event(self, event: object) -> None:
        pass

    def close(self) -> None:
        pass


class FailingUI(_ApiUI):
    def observer(self, summary: ShareSummary) -> TunnelObserver[Tunnel] | None:
        return FailingObserver()  # type: ignore[return-value]


def test_an_error_after_start_removes_the_token_file(sandbox: Sandbox, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    with Service(echo) as service, pytest.raises(RuntimeError, match="observer broke"):
        open_share(builtin_request(service, token_file), FailingUI())
    assert not token_file.exists()


def test_a_replaced_token_file_is_not_removed(sandbox: Sandbox, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    with Service(echo) as service, open_share(builtin_request(service, token_file), _ApiUI()):
        token_file.unlink()
        token_file.write_text("the user's own notes\n")
    assert token_file.read_text() == "the user's own notes\n"


def test_keep_token_file_in_process(sandbox: Sandbox, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    with Service(echo) as service:
        request = builtin_request(service, token_file, keep_token_file=True)
        with open_share(request, _ApiUI()) as tunnel:
            pass
    assert token_file.read_text().strip() == tunnel.token


def test_a_share_that_never_starts_removes_even_a_kept_token_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    with Service(echo) as service, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        request = builtin_request(
            service, token_file, keep_token_file=True, remote_port=taken.getsockname()[1]
        )
        with pytest.raises(ForwardRefused):
            open_share(request, _ApiUI())
    assert not token_file.exists()
