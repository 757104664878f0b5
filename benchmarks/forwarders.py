"""The two forwarders under test, behind one interface, and the child processes around them.

A :class:`Forwarder` is a running process that makes a remote port on the sshd forward to a local
service. The load generator only needs :attr:`Forwarder.remote_port`, :attr:`Forwarder.prefix`
(bytes a raw TCP client sends first) and :attr:`Forwarder.headers` (extra HTTP request headers).

- :class:`SshForward`: ``ssh -N -R 0:127.0.0.1:PORT`` with OpenSSH's default settings.
- :class:`ShareForward`: ``safetunnel share PORT --json ...``; its token comes from the
  ``started`` event and lives only in memory (it is never printed, logged or put in argv).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

HERE = Path(__file__).resolve().parent
# The console script next to this interpreter; SAFETUNNEL_BENCH_SAFETUNNEL may name another build.
SAFETUNNEL = os.environ.get("SAFETUNNEL_BENCH_SAFETUNNEL") or str(
    Path(sys.executable).with_name("safetunnel")
)
_TOKEN_RE = re.compile(r"st_[A-Za-z0-9_-]{8,}")
_ALLOCATED_RE = re.compile(r"Allocated port (\d+) for remote forward")


class BenchError(RuntimeError):
    """A stage of the benchmark could not run (the message never holds a token)."""


def redact(text: str) -> str:
    return _TOKEN_RE.sub("st_<redacted>", text)


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return redact("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return ""


def memory(pid: int) -> dict[str, int]:
    """Current and peak resident set size in bytes (VmRSS, VmHWM), and the thread count."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out["rss" if key == "VmRSS" else "peak_rss"] = int(value.split()[0]) * 1024
                elif key == "Threads":
                    out["threads"] = int(value)
    except OSError:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            out = {"rss": proc.memory_info().rss, "threads": proc.num_threads()}
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of the process and of its live children: the OpenSSH engine's ``ssh`` master
    does the crypto a paramiko share does itself, so a fair comparison counts both."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for one in (proc, *proc.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = one.cpu_times()
                total += times.user + times.system
        return total
    return float("nan")


class Children:
    """Every process the benchmark starts, so that ``close()`` can leave no orphan behind."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **kwargs)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self._procs):
            stop_process(proc, grace=5.0)
        self._procs.clear()


def stop_process(
    proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM
) -> int | None:
    """Signal, wait ``grace`` seconds, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.returncode


class Forwarder:
    """A started forwarder process. Subclasses set ``remote_port``, ``prefix`` and ``headers``."""

    name = "forwarder"

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.remote_port = 0
        self.prefix = ""
        self.headers: dict[str, str] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def memory(self) -> dict[str, int]:
        return memory(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> int | None:
        return stop_process(self.proc, grace=10.0)

    def describe_failure(self) -> str:
        code = self.proc.poll()
        state = "running" if code is None else f"exit code {code}"
        return f"{self.name} ({state}); last log lines:\n{tail(self.log_path)}"


class SshForward(Forwarder):
    """OpenSSH ``ssh -N -R 0:127.0.0.1:PORT``; the port comes from "Allocated port N ..."."""

    name = "ssh"

    def __init__(
        self,
        children: Children,
        sshd: Any,
        service_port: int,
        log_path: Path,
        env: dict[str, str],
        timeout: float = 20.0,
    ) -> None:
        args = [
            "ssh",
            "-N",
            "-F",
            "/dev/null",
            "-R",
            f"0:127.0.0.1:{service_port}",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-i",
            str(sshd.client_key_path),
            "-p",
            str(sshd.port),
            f"{sshd.user}@127.0.0.1",
        ]
        proc = children.popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        super().__init__(proc, log_path)
        found = threading.Event()
        assert proc.stderr is not None
        threading.Thread(target=self._drain, args=(proc.stderr, found), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                found.wait(0.5)
                self.stop()
                raise BenchError(f"ssh -R did not report a port: {self.describe_failure()}")

    def _drain(self, stream: IO[bytes], found: threading.Event) -> None:
        with open(self.log_path, "ab") as log:
            for raw in stream:
                log.write(raw)
                log.flush()
                match = _ALLOCATED_RE.search(raw.decode(errors="replace"))
                if match and not found.is_set():
                    self.remote_port = int(match.group(1))
                    found.set()


class ShareForward(Forwarder):
    """``safetunnel share PORT --json``; stdout is drained all along (one event per connection)."""

    name = "safetunnel"

    def __init__(
        self,
        children: Children,
        sshd: Any,
        service_port: int,
        protocol: str,
        log_path: Path,
        env: dict[str, str],
        ttl: str = "1h",
        extra_args: tuple[str, ...] = (),
        timeout: float = 30.0,
    ) -> None:
        args = [
            SAFETUNNEL,
            "share",
            str(service_port),
            "--host",
            f"{sshd.user}@127.0.0.1:{sshd.port}",
            "--identity",
            str(sshd.client_key_path),
            "--known-hosts",
            str(sshd.known_hosts),
            "--yes",
            "--json",
            "--ttl",
            ttl,
            "--protocol",
            protocol,
            *extra_args,
        ]
        stderr = open(log_path, "ab")  # noqa: SIM115 - closed right below; the child keeps its copy
        try:
            proc = children.popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
            )
        finally:
            stderr.close()
        super().__init__(proc, log_path)
        self.protocol = protocol
        self.events: dict[str, int] = {}
        self.stopped: dict[str, Any] | None = None
        self._started: dict[str, Any] | None = None
        found = threading.Event()
        assert proc.stdout is not None
        threading.Thread(target=self._drain, args=(proc.stdout, found), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                found.wait(0.5)
                self.stop()
                raise BenchError(f"safetunnel share did not start: {self.describe_failure()}")
        started: dict[str, Any] = self._started or {}
        token = started.get("token")
        if not isinstance(token, str) or not token.startswith("st_"):
            self.stop()
            raise BenchError(
                "safetunnel share's started event has no token "
                "(the benchmark needs it in the event, not --token-file)"
            )
        self.remote_port = int(started["remote_port"])
        self.prefix = f"SAFETUNNEL {token}\n"
        self.headers = {"X-Safetunnel-Token": token}
        self.info = {k: v for k, v in started.items() if k not in ("token", "url")}

    def _drain(self, stream: IO[bytes], found: threading.Event) -> None:
        for raw in stream:
            # The hot path, two lines per connection: counted without parsing. This thread
            # shares the machine with what it measures.
            kind = _TRAFFIC.get(raw[:_TRAFFIC_HEAD])
            if kind is not None:
                self.events[kind] = self.events.get(kind, 0) + 1
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                self.events["unparsable"] = self.events.get("unparsable", 0) + 1
                continue
            kind = str(event.get("event"))
            self.events[kind] = self.events.get(kind, 0) + 1
            if kind == "started" and not found.is_set():
                self._started = event
                found.set()
            elif kind == "stopped":
                self.stopped = event


# How the share's --json traffic lines start: their event name is their first key.
_TRAFFIC = {
    b'{"event":"connection",': "connection",
    b'{"event":"connection-c': "connection-closed",
}
_TRAFFIC_HEAD = 22
assert all(len(head) == _TRAFFIC_HEAD for head in _TRAFFIC)


def isolated_env(root: Path) -> dict[str, str]:
    """HOME, SAFETUNNEL_STATE_DIR and SAFETUNNEL_CONFIG_DIR under ``root``; no agent, no keyring."""
    dropped = {"SSH_AUTH_SOCK", "PYTHON_KEYRING_BACKEND"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SAFETUNNEL_") and k not in dropped
    }
    for sub in ("home", "config", "state"):
        (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    env.update(
        HOME=str(root / "home"),
        SAFETUNNEL_CONFIG_DIR=str(root / "config"),
        SAFETUNNEL_STATE_DIR=str(root / "state"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    return env


class Services:
    """``services.py`` in its own process; ``ports`` maps sink/echo/reqrep/http to a port."""

    def __init__(self, children: Children, timeout: float = 15.0) -> None:
        self.proc = children.popen(
            [sys.executable, str(HERE / "services.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, timeout)
        if not line:
            raise BenchError("the local services did not start")
        self.ports: dict[str, int] = json.loads(line)


def _readline(stream: IO[bytes], timeout: float) -> bytes:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else b""


class LoadGen:
    """One ``loadgen.py`` process per measurement; the spec goes in on stdin."""

    def __init__(self, children: Children) -> None:
        self.children = children

    def start(self, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
        proc = self.children.popen(
            [sys.executable, str(HERE / "loadgen.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec).encode() + b"\n")
        proc.stdin.flush()
        return proc

    def run(
        self, forwarder: Forwarder | None, port: int, timeout: float = 300.0, **spec: Any
    ) -> dict[str, Any]:
        """Run one measurement through ``forwarder`` (or directly to ``port`` when None)."""
        proc = self.start(self.spec(forwarder, port, spec))
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, grace=1.0, sig=signal.SIGKILL)
            return {"error": f"load generator timed out after {timeout:.0f}s"}
        return parse_result(out.decode(errors="replace").strip().splitlines())

    @staticmethod
    def spec(forwarder: Forwarder | None, port: int, spec: dict[str, Any]) -> dict[str, Any]:
        if forwarder is None:
            return {"port": port, "prefix": "", "headers": {}, **spec}
        return {
            "port": forwarder.remote_port,
            "prefix": forwarder.prefix,
            "headers": forwarder.headers,
            **spec,
        }


def parse_result(lines: list[str]) -> dict[str, Any]:
    if not lines:
        return {"error": "the load generator printed nothing (crashed?)"}
    # Redacted before parsing: a broken gate could forward the preamble, and a service could
    # then echo the token back into an error sample.
    line = redact(lines[-1])
    try:
        result: dict[str, Any] = json.loads(line)
    except ValueError:
        return {"error": f"unparsable load generator output: {line[:200]}"}
    return result
