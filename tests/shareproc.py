"""Drive the real ``safetunnel`` console script in a subprocess and collect everything it says."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

SCRIPT = str(Path(sys.executable).with_name("safetunnel"))


class ShareProcess:
    """``safetunnel <args>`` with stdout/stderr read by threads into lists (nothing is lost).

    Every stdout line is a JSON event (``--json``) unless ``json_events`` is false.
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        json_events: bool = True,
    ) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [SCRIPT, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.proc.stdout, self.stdout_lines, json_events)
            ),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines, False)),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[bytes], sink: list[str], parse: bool) -> None:
        for raw in stream:
            line = raw.decode(errors="replace")
            sink.append(line)
            if parse and line.strip():
                self._events.put(json.loads(line))

    def next_event(self, kind: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {kind or 'event'} within {timeout}s; stderr:\n{self.stderr}"
                )
            try:
                event = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self._events.empty():
                    self.join()
                    if self._events.empty():
                        raise AssertionError(
                            f"exited {self.proc.returncode} before {kind}; stderr:\n{self.stderr}"
                        ) from None
                continue
            if kind is None or event.get("event") == kind:
                return event

    def started(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.next_event("started", timeout)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.join()
        return code

    def join(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def run(
    args: list[str], env: dict[str, str], timeout: float = 30.0, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
    )
