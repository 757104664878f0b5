from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from safetunnel.errors import SafetunnelError, StateError
from safetunnel.registry import control


def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"got": args}


def failing(_: dict[str, Any]) -> dict[str, Any]:
    raise SafetunnelError("refused: past max_ttl")


def buggy(_: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("oops")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    path = tmp_path / "st-abcdef.sock"
    with control.ControlServer(path, {"echo": echo, "fail": failing, "bug": buggy}) as srv:
        yield srv


def test_round_trip_and_socket_mode(server: control.ControlServer) -> None:
    assert control.request(server.path, "echo", seconds=600) == {
        "ok": True,
        "got": {"seconds": 600},
    }
    st = server.path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0


def test_handler_errors_become_replies_and_server_survives(server: control.ControlServer) -> None:
    with pytest.raises(control.ControlError, match="refused: past max_ttl"):
        control.request(server.path, "fail")
    with pytest.raises(control.ControlError, match="internal error in bug: RuntimeError"):
        control.request(server.path, "bug")
    with pytest.raises(control.ControlError, match="unknown op 'nope'"):
        control.request(server.path, "nope")
    assert control.request(server.path, "echo")["ok"] is True


@pytest.mark.parametrize("line", [b"not json\n", b"[1,2]\n", b'{"op": 5}\n', b"\n"])
def test_bad_requests_get_error_replies(server: control.ControlServer, line: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(server.path))
        sock.sendall(line)
        reply = sock.makefile("rb").readline()
    assert b'"ok": false' in reply


def test_dispatch_pure() -> None:
    srv = control.ControlServer(Path("/nonexistent.sock"), {"echo": echo})
    assert srv.dispatch(b'{"op": "echo", "x": 1}') == {"ok": True, "got": {"x": 1}}
    assert srv.dispatch(b"\xff")["ok"] is False


def test_close_is_idempotent_joins_thread_and_unlinks(tmp_path: Path) -> None:
    path = tmp_path / "st-abcdef.sock"
    srv = control.ControlServer(path, {})
    srv.start()
    thread = srv._thread
    assert thread is not None and thread.name == "safetunnel-control-st-abcdef"
    srv.close()
    srv.close()
    assert not thread.is_alive()
    assert not path.exists()


def test_missing_socket_is_control_unavailable(tmp_path: Path) -> None:
    with pytest.raises(control.ControlUnavailable, match="no control socket"):
        control.request(tmp_path / "st-000000.sock", "status")


def test_stale_socket_file_is_refused_then_replaced(tmp_path: Path) -> None:
    path = tmp_path / "st-abcdef.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as after a crash
    with pytest.raises(control.ControlUnavailable):
        control.request(path, "status")
    with control.ControlServer(path, {"echo": echo}):
        assert control.request(path, "echo")["ok"]


def test_long_paths_go_through_proc_fd(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "st-abcdef.sock"
    assert len(str(path)) > 108
    with control.ControlServer(path, {"echo": echo}):
        assert path.exists()
        assert control.request(path, "echo")["ok"]


def test_peer_uid_check() -> None:
    assert control.peer_uid_allowed(os.getuid())
    assert not control.peer_uid_allowed(os.getuid() + 1)
    assert control.peer_uid_allowed(1000, own_uid=1000)
    assert not control.peer_uid_allowed(0, own_uid=1000)  # root is not the owner either


def test_foreign_peer_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Running as one user we cannot connect as another; pretend our own uid is someone else's.
    path = tmp_path / "st-abcdef.sock"
    with control.ControlServer(path, {"echo": echo}):
        real = control.peer_uid_allowed
        monkeypatch.setattr(
            control,
            "peer_uid_allowed",
            lambda uid, own_uid=None: (
                threading.current_thread().name.startswith("MainThread") and real(uid, own_uid)
            ),
        )
        with pytest.raises(control.ControlError, match="permission denied"):
            control.request(path, "echo")


def test_peer_credentials_names_this_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert control.peer_credentials(a) == (os.getpid(), os.getuid(), os.getgid())


def test_stop_handler_may_close_from_the_serving_thread(tmp_path: Path) -> None:
    path = tmp_path / "st-abcdef.sock"
    srv: control.ControlServer

    def stop(_: dict[str, Any]) -> dict[str, Any]:
        srv.close()  # must not deadlock joining its own thread
        return {}

    srv = control.ControlServer(path, {"stop": stop})
    srv.start()
    assert control.request(path, "stop")["ok"]
    srv.close()
    assert srv._thread is not None and not srv._thread.is_alive()


def test_a_live_socket_is_never_stolen(server: control.ControlServer) -> None:
    with pytest.raises(StateError, match="in use by another running tunnel"):
        control.ControlServer(server.path, {}).start()
    assert control.request(server.path, "echo")["ok"]
