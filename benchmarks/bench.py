"""Benchmark ``safetunnel share`` against OpenSSH ``ssh -R`` on this machine.

    python benchmarks/bench.py [--quick] [--json-out FILE] [--only-ssh] [--tests LIST]
                               [--engines openssh,paramiko]

One run starts a real sshd on loopback (tests/sshd.py), the local services (services.py, own
process), one ``ssh -R`` forward and, per engine, one ``safetunnel share --engine E`` per service,
and measures them all in the same run, rotating which goes first round by round. Every
measurement is a fresh load generator process (loadgen.py). It prints a table and writes JSON
(default benchmarks/results/latest.json) with the per-round values, the medians, the ratio of each
engine to ssh -R and the floors each engine must meet.
Exit status: 0 when every floor of the stages run passed (or, with --only-ssh, when the ssh half
ran), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.attacks import stage_attack  # noqa: E402 - needs the sys.path line above
from benchmarks.forwarders import (  # noqa: E402 - needs the sys.path line above as a script
    SAFETUNNEL,
    BenchError,
    Children,
    Forwarder,
    LoadGen,
    Services,
    ShareForward,
    SshForward,
    isolated_env,
    parse_result,
    redact,
    stop_process,
)

SSHD_HELPER_ENV = "SAFETUNNEL_BENCH_SSHD_HELPER"  # dev only: another path to an sshd.py
DEFAULT_OUT = REPO / "benchmarks" / "results" / "latest.json"
TESTS = ("bulk", "http", "conn", "held", "idle", "cli", "attack")
SSH, ST = "ssh", "safetunnel"  # ST: engine-independent measurements (the CLI's wall time)
ENGINES = ("openssh", "paramiko")
MB = 1_000_000


@dataclass
class Config:
    # Six: with ssh -R and two engines the order rotates every two rounds, so every forwarder
    # goes first and last equally often only over a multiple of six.
    rounds: int = 6
    bulk_mib: int = 256
    conn_seconds: float = 3.0
    rps_seconds: float = 2.0
    held: tuple[int, ...] = (500, 1000)
    hold_seconds: float = 2.0
    idle_settle: float = 2.0
    cli_runs: int = 7
    only_ssh: bool = False
    tests: tuple[str, ...] = TESTS
    engines: tuple[str, ...] = ENGINES
    held_max_connections: int = 1100

    @classmethod
    def quick(cls) -> Config:
        return cls(
            rounds=2,
            bulk_mib=64,
            conn_seconds=1.5,
            rps_seconds=1.0,
            hold_seconds=1.0,
            idle_settle=1.0,
            cli_runs=3,
        )


@dataclass
class Metric:
    """One measured quantity: values per round for each forwarder, and how to judge them."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    aggregate: str = "median"  # or "max" (for error counts)
    # Per forwarder: "ssh", an engine name ("openssh", "paramiko"), or "safetunnel".
    values: dict[str, list[float | None]] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def add(self, who: str, value: float | None, detail: dict[str, Any]) -> None:
        self.values.setdefault(who, []).append(value)
        self.rounds.append({"forwarder": who, "value": value, **detail})

    def summary(self, who: str) -> float | None:
        got = [v for v in self.values.get(who, []) if v is not None]
        # A failed round makes a median unreliable; a max-aggregate still reports the worst.
        if not got or (len(got) < len(self.values[who]) and self.aggregate != "max"):
            return None
        return max(got) if self.aggregate == "max" else statistics.median(got)

    def ratio(self, who: str) -> float | None:
        a, b = self.summary(who), self.summary(SSH)
        if a is None or b is None or b == 0 or self.aggregate == "max":
            return None
        return a / b

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "aggregate": self.aggregate,
            "summary": {who: self.summary(who) for who in self.values},
            "ratio": {who: self.ratio(who) for who in self.values if who != SSH},
            "values": self.values,
            "rounds": self.rounds,
        }


@dataclass
class Floor:
    name: str
    stage: str  # the floor is judged only when this stage was asked for
    metric: str
    who: str  # an engine, EACH (every engine measured) or ST (engine-independent)
    what: str  # "ratio" (to ssh -R) or "value"
    op: str  # ">=" or "<="
    threshold: float

    def judge(self, metrics: dict[str, Metric], who: str) -> dict[str, Any]:
        metric = metrics.get(self.metric)
        value = None
        if metric is not None:
            value = metric.ratio(who) if self.what == "ratio" else metric.summary(who)
        passed = (
            None
            if value is None
            else (value >= self.threshold if self.op == ">=" else value <= self.threshold)
        )
        return {
            "name": self.name,
            "engine": who,
            "metric": self.metric,
            "on": self.what,
            "op": self.op,
            "threshold": self.threshold,
            "value": value,
            "pass": passed,
        }


EACH = "each"
FLOORS = (
    Floor(
        "bulk raw-TCP throughput >= 0.8x ssh -R", "bulk", "bulk_tcp", "openssh", "ratio", ">=", 0.8
    ),
    Floor(
        "1-client connection rate >= 0.6x ssh -R", "conn", "conn_1", "openssh", "ratio", ">=", 0.6
    ),
    Floor(
        "50-client connection rate >= 0.6x ssh -R", "conn", "conn_50", "openssh", "ratio", ">=", 0.6
    ),
    Floor(
        "HTTP keep-alive requests >= 0.5x ssh -R", "http", "http_rps", "openssh", "ratio", ">=", 0.5
    ),
    Floor(
        "bulk raw-TCP throughput >= 0.5x ssh -R", "bulk", "bulk_tcp", "paramiko", "ratio", ">=", 0.5
    ),
    Floor(
        "1-client connection rate >= 0.5x ssh -R", "conn", "conn_1", "paramiko", "ratio", ">=", 0.5
    ),
    Floor(
        "50-client connection rate >= 0.3x ssh -R",
        "conn",
        "conn_50",
        "paramiko",
        "ratio",
        ">=",
        0.3,
    ),
    Floor("500 held connections with 0 errors", "held", "held_500_errors", EACH, "value", "<=", 0),
    Floor("idle share RSS <= 60 MB", "idle", "idle_rss", EACH, "value", "<=", 60.0),
    Floor("`safetunnel list` wall time <= 0.3 s", "cli", "cli_list", ST, "value", "<=", 0.3),
    Floor(
        "all token holder's requests OK in a flood",
        "attack",
        "flood_valid_ok",
        EACH,
        "value",
        ">=",
        100,
    ),
    Floor(
        "junk flood peak RSS <= 60 + 250 MB", "attack", "junk_peak_rss", EACH, "value", "<=", 310.0
    ),
)


def judge_floors(
    metrics: dict[str, Metric], tests: tuple[str, ...], engines: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One verdict per floor and engine, for the stages that were asked for and engines run."""
    verdicts = []
    for floor in FLOORS:
        if floor.stage not in tests:
            continue
        if floor.who == EACH:
            measured = metrics[floor.metric].values if floor.metric in metrics else {}
            targets = [who for who in engines if who in measured] or list(engines[:1])
        else:
            targets = [floor.who] if floor.who == ST or floor.who in engines else []
        verdicts.extend(floor.judge(metrics, who) for who in targets)
    return verdicts


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {redact(message)}", file=sys.stderr, flush=True)


def load_sshd_helper() -> Any:
    """tests/sshd.py of this repo (``SAFETUNNEL_BENCH_SSHD_HELPER`` may point elsewhere)."""
    path = Path(os.environ.get(SSHD_HELPER_ENV) or REPO / "tests" / "sshd.py")
    if not path.is_file():
        raise BenchError(f"{path} is missing: the benchmark starts sshd with the tests' helper")
    if not Path("/usr/sbin/sshd").exists():
        raise BenchError("/usr/sbin/sshd is not installed (apt-get install openssh-server)")
    sys.path.insert(0, str(path.parent))
    try:
        return importlib.import_module(path.stem)
    except ImportError as exc:
        raise BenchError(
            f"cannot import {path} ({exc}); install with: pip install -e '.[test]'"
        ) from exc


def raise_fd_limit(wanted: int) -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


def machine_info() -> dict[str, Any]:
    def run(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(args, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip()
        return ""

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in ("paramiko", "cryptography", "safetunnel"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # a missing distribution is just "unknown"
            versions[dist] = "unknown"
    import psutil

    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        **{f"{k}_version": v for k, v in versions.items()},
        "openssh": run("ssh", "-V"),
        "git_commit": run("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(run("git", "-C", str(REPO), "status", "--porcelain", "--", "safetunnel")),
        "loadavg_start": list(os.getloadavg()),
    }


class Bench:
    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.children = Children()
        self.loadgen = LoadGen(self.children)
        self.metrics: dict[str, Metric] = {}
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.direct: dict[str, Any] = {}
        self.forwarders: dict[tuple[str, str], Forwarder] = {}
        self.share_exits: list[dict[str, Any]] = []
        self.sshd: Any = None
        self.services: Services | None = None
        # The engines still measured; one that cannot start is dropped with an error.
        self.engines: list[str] = [] if config.only_ssh else list(config.engines)
        self.env = isolated_env(workdir / "share-env")
        self._n = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def setup(self) -> None:
        helper = load_sshd_helper()
        log("starting sshd on loopback")
        self.sshd = helper.start_sshd(self.workdir / "sshd", log_level="INFO")
        self.services = Services(self.children)
        log(f"services: {self.services.ports}")
        for service in ("sink", "reqrep", "http"):
            self.forwarders[(SSH, service)] = self.start_ssh(service)
        for engine in list(self.engines):
            try:
                for service, protocol in (("sink", "tcp"), ("reqrep", "tcp"), ("http", "http")):
                    self.forwarders[(engine, service)] = self.start_share(
                        service, protocol, engine=engine
                    )
            except BenchError as exc:
                self.disable_engine(engine, str(exc))

    @property
    def st_enabled(self) -> bool:
        return bool(self.engines)

    def disable_engine(self, engine: str, why: str) -> None:
        if engine in self.engines:
            self.engines.remove(engine)
        self.errors.append(f"safetunnel --engine {engine} not run: {why}")
        log(f"engine {engine} disabled: {why}")

    def start_ssh(self, service: str) -> Forwarder:
        assert self.services is not None
        self._n += 1
        return SshForward(
            self.children,
            self.sshd,
            self.services.ports[service],
            self.workdir / f"ssh-{self._n}-{service}.log",
            self.env,
        )

    def start_share(
        self, service: str, protocol: str, extra: tuple[str, ...] = (), *, engine: str
    ) -> ShareForward:
        assert self.services is not None
        self._n += 1
        return ShareForward(
            self.children,
            self.sshd,
            self.services.ports[service],
            protocol,
            self.workdir / f"share-{self._n}-{engine}-{service}.log",
            self.env,
            extra_args=("--engine", engine, *extra),
        )

    def stop_forwarder(self, forwarder: Forwarder) -> None:
        code = forwarder.stop()
        if isinstance(forwarder, ShareForward):
            record = {
                "exit_code": code,
                "events": dict(forwarder.events),
                "stopped_reason": (forwarder.stopped or {}).get("reason"),
            }
            self.share_exits.append(record)
            if code != 0:
                self.notes.append(
                    f"a share exited {code} on SIGTERM (expected 0): {forwarder.describe_failure()}"
                )

    def teardown(self) -> None:
        for forwarder in self.forwarders.values():
            with contextlib.suppress(Exception):
                self.stop_forwarder(forwarder)
        self.forwarders.clear()
        self.children.close()
        if self.sshd is not None:
            self.sshd.stop()

    # ---- helpers ---------------------------------------------------------------------------

    def metric(self, key: str, label: str, unit: str, **kw: Any) -> Metric:
        if key not in self.metrics:
            self.metrics[key] = Metric(key, label, unit, **kw)
        return self.metrics[key]

    def order(self, round_no: int) -> list[str]:
        """ssh -R and every engine, rotated and reversed by round: each goes first (and last)
        in turn, so neither a warm-up nor a slowly loading machine favours one of them."""
        who = [SSH, *self.engines]
        shift = (round_no // 2) % len(who)
        who = who[shift:] + who[:shift]
        return who if round_no % 2 == 0 else who[::-1]

    def measure(
        self, metric: Metric, who: str, forwarder: Forwarder | None, round_no: int, **spec: Any
    ) -> dict[str, Any]:
        if forwarder is None or not forwarder.alive():
            detail = {
                "round": round_no,
                "error": "forwarder is not running"
                + (f": {forwarder.describe_failure()}" if forwarder else ""),
            }
            metric.add(who, None, detail)
            return detail
        cpu0 = forwarder.cpu_seconds()
        result = self.loadgen.run(forwarder, 0, **spec)
        result["forwarder_cpu_s"] = round(forwarder.cpu_seconds() - cpu0, 3)
        result["round"] = round_no
        value = result.pop("value", None)
        if "error" in result:
            value = None
            log(f"  {metric.key} {who} round {round_no}: ERROR {result['error']}")
        else:
            log(f"  {metric.key} {who} round {round_no}: {value:.3f} {metric.unit}")
        metric.add(who, value, result)
        return result

    def rounds(self) -> Iterator[tuple[int, str]]:
        for round_no in range(self.config.rounds):
            for who in self.order(round_no):
                yield round_no, who

    # ---- stages ----------------------------------------------------------------------------

    def run(self) -> None:
        stages: list[tuple[str, Callable[[], None]]] = [
            ("direct", self.stage_direct),
            ("bulk", self.stage_bulk),
            ("http", self.stage_http),
            ("conn", self.stage_conn),
            ("idle", self.stage_idle),
            ("held", self.stage_held),
            ("cli", self.stage_cli),
            ("attack", lambda: stage_attack(self)),
        ]
        for name, stage in stages:
            if name != "direct" and name not in self.config.tests:
                continue
            log(f"stage {name}")
            try:
                stage()
            except BenchError as exc:
                self.errors.append(f"stage {name}: {exc}")
                log(f"stage {name} failed: {exc}")

    def stage_direct(self) -> None:
        """Straight to the services, no forwarder: shows the harness is not the bottleneck."""
        assert self.services is not None
        ports = self.services.ports
        cases: tuple[tuple[str, int, dict[str, Any]], ...] = (
            ("bulk_tcp_gbit", ports["sink"], {"mode": "bulk_tcp", "mib": self.config.bulk_mib}),
            ("bulk_http_gbit", ports["http"], {"mode": "bulk_http", "mib": self.config.bulk_mib}),
            (
                "conn_1_per_s",
                ports["reqrep"],
                {"mode": "connrate", "clients": 1, "seconds": self.config.conn_seconds / 2},
            ),
            (
                "conn_50_per_s",
                ports["reqrep"],
                {"mode": "connrate", "clients": 50, "seconds": self.config.conn_seconds / 2},
            ),
        )
        for key, port, spec in cases:
            result = self.loadgen.run(None, port, **spec)
            self.direct[key] = result.get("value")
            if "error" in result:
                self.errors.append(f"direct {key}: {result['error']}")
        log(f"  direct: { {k: round(v, 2) if v else v for k, v in self.direct.items()} }")

    def stage_bulk(self) -> None:
        metric = self.metric(
            "bulk_tcp", f"bulk raw TCP, 1 stream, {self.config.bulk_mib} MiB", "Gbit/s"
        )
        for round_no, who in self.rounds():
            self.measure(
                metric,
                who,
                self.forwarders.get((who, "sink")),
                round_no,
                mode="bulk_tcp",
                mib=self.config.bulk_mib,
            )

    def stage_http(self) -> None:
        metric = self.metric(
            "bulk_http", f"bulk HTTP response, {self.config.bulk_mib} MiB", "Gbit/s"
        )
        for round_no, who in self.rounds():
            self.measure(
                metric,
                who,
                self.forwarders.get((who, "http")),
                round_no,
                mode="bulk_http",
                mib=self.config.bulk_mib,
            )
        metric = self.metric("http_rps", "HTTP small requests, 1 keep-alive conn", "req/s")
        for round_no, who in self.rounds():
            self.measure(
                metric,
                who,
                self.forwarders.get((who, "http")),
                round_no,
                mode="http_rps",
                seconds=self.config.rps_seconds,
            )

    def stage_conn(self) -> None:
        for clients in (1, 50):
            metric = self.metric(
                f"conn_{clients}",
                f"new connections/s, {clients} client" + ("s" if clients > 1 else ""),
                "conn/s",
            )
            latency = self.metric(
                f"conn_{clients}_p50",
                f"  connect+exchange latency p50, {clients} client" + ("s" if clients > 1 else ""),
                "ms",
                higher_is_better=False,
            )
            for round_no, who in self.rounds():
                result = self.measure(
                    metric,
                    who,
                    self.forwarders.get((who, "reqrep")),
                    round_no,
                    mode="connrate",
                    clients=clients,
                    seconds=self.config.conn_seconds,
                )
                latency.add(
                    who, result.get("p50_ms"), {"round": round_no, "p99_ms": result.get("p99_ms")}
                )

    def fresh_pair(self) -> dict[str, Forwarder]:
        """A new ssh -R and a new share per engine to the echo service (clean peak-RSS
        counters)."""
        pair: dict[str, Forwarder] = {SSH: self.start_ssh("echo")}
        extra = ("--max-connections", str(self.config.held_max_connections))
        try:
            for engine in self.engines:
                pair[engine] = self.start_share("echo", "tcp", extra, engine=engine)
        except BenchError:
            for forwarder in pair.values():
                stop_process(forwarder.proc, grace=5.0)
            raise
        return pair

    def stage_idle(self) -> None:
        rss = self.metric("idle_rss", "idle RSS after start", "MB", higher_is_better=False)
        threads = self.metric(
            "idle_threads", "idle threads after start", "threads", higher_is_better=False
        )
        for round_no in range(self.config.rounds):
            pair = self.fresh_pair()
            try:
                time.sleep(self.config.idle_settle)
                for who, forwarder in pair.items():
                    mem = forwarder.memory()
                    rss.add(who, mem.get("rss", 0) / MB, {"round": round_no, **mem})
                    threads.add(who, mem.get("threads"), {"round": round_no})
                    log(
                        f"  idle {who} round {round_no}: {mem.get('rss', 0) / MB:.1f} MB, "
                        f"{mem.get('threads')} threads"
                    )
            finally:
                for forwarder in pair.values():
                    self.stop_forwarder(forwarder)

    def stage_held(self) -> None:
        if self.st_enabled:
            self.notes.append(
                f"held tests run the share with --max-connections "
                f"{self.config.held_max_connections} (its default is 256)"
            )
        for count in self.config.held:
            errors = self.metric(
                f"held_{count}_errors",
                f"{count} held connections: errors",
                "errors",
                higher_is_better=False,
                aggregate="max",
            )
            peak = self.metric(
                f"held_{count}_peak_rss", f"{count} held: peak RSS", "MB", higher_is_better=False
            )
            opened = self.metric(
                f"held_{count}_open_s",
                f"{count} held: time to open all",
                "s",
                higher_is_better=False,
            )
            for round_no in range(self.config.rounds):
                pair = self.fresh_pair()
                try:
                    for who in self.order(round_no):
                        self.hold(count, round_no, who, pair[who], errors, peak, opened)
                finally:
                    for forwarder in pair.values():
                        self.stop_forwarder(forwarder)

    def hold(
        self,
        count: int,
        round_no: int,
        who: str,
        forwarder: Forwarder,
        errors: Metric,
        peak: Metric,
        opened: Metric,
    ) -> None:
        proc = self.loadgen.start(self.loadgen.spec(forwarder, 0, {"mode": "held", "count": count}))
        assert proc.stdin is not None and proc.stdout is not None
        detail: dict[str, Any] = {"round": round_no}
        try:
            holding = parse_result([proc.stdout.readline().decode(errors="replace")])
            time.sleep(self.config.hold_seconds)
            detail["during_hold"] = forwarder.memory()
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            out, _ = proc.communicate(timeout=120)
            result = parse_result(out.decode(errors="replace").strip().splitlines())
        except (OSError, subprocess.SubprocessError) as exc:
            stop_process(proc, grace=1.0, sig=signal.SIGKILL)
            result = {"error": f"{type(exc).__name__}: {exc}"}
            holding = {}
        detail.update(holding=holding, after=forwarder.memory(), alive=forwarder.alive())
        mem = detail["after"]
        if "error" in result:
            errors.add(who, float(count), {**detail, **result})
            log(f"  held {count} {who} round {round_no}: ERROR {result['error']}")
        else:
            result.pop("value", None)
            errors.add(who, float(result["errors"]), {**detail, **result})
            log(
                f"  held {count} {who} round {round_no}: {result['errors']} errors, "
                f"{result['alive_after_hold']} alive, peak RSS {mem.get('peak_rss', 0) / MB:.1f} MB"
                f", {detail['during_hold'].get('threads')} threads while holding"
            )
        peak.add(who, mem.get("peak_rss", 0) / MB if mem else None, {"round": round_no})
        opened.add(who, holding.get("open_seconds"), {"round": round_no})

    def stage_cli(self) -> None:
        """Wall time of short commands, each run with state/config/HOME in a fresh temp dir."""
        cases = (
            ("cli_list", "`safetunnel list` wall time", [SAFETUNNEL, "list"]),
            ("cli_help", "`safetunnel --help` wall time", [SAFETUNNEL, "--help"]),
        )
        for key, label, argv in cases:
            metric = self.metric(key, label, "s", higher_is_better=False)
            for run_no in range(self.config.cli_runs + 1):  # run 0 warms the page cache
                root = Path(tempfile.mkdtemp(dir=self.workdir, prefix="cli-"))
                env = isolated_env(root)
                start = time.perf_counter()
                done = subprocess.run(
                    argv,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                )
                elapsed = time.perf_counter() - start
                shutil.rmtree(root, ignore_errors=True)
                if run_no == 0:
                    continue
                if done.returncode != 0:
                    message = redact(
                        (done.stderr or done.stdout).strip().splitlines()[-1:][0]
                        if (done.stderr or done.stdout).strip()
                        else ""
                    )
                    metric.add(
                        ST,
                        None,
                        {
                            "run": run_no,
                            "seconds": elapsed,
                            "error": f"exit {done.returncode}: {message}",
                        },
                    )
                else:
                    metric.add(ST, elapsed, {"run": run_no})
            summary = metric.summary(ST)
            log(
                f"  {key}: "
                + (
                    f"{summary:.3f} s"
                    if summary is not None
                    else f"ERROR {metric.rounds[-1].get('error')}"
                )
            )
        # Reference: the interpreter's own start-up, the floor under any Python CLI.
        runs = []
        for _ in range(self.config.cli_runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=False, timeout=60)
            runs.append(time.perf_counter() - start)
        self.direct["python_startup_s"] = statistics.median(runs)

    # ---- report ----------------------------------------------------------------------------

    def report(
        self, started: float, argv: list[str], machine: dict[str, Any], fd_limit: dict[str, int]
    ) -> dict[str, Any]:
        machine = {**machine, "loadavg_end": list(os.getloadavg()), "fd_limit": fd_limit}
        return {
            "schema": 1,
            "command": " ".join(["python", "benchmarks/bench.py", *argv]),
            "started_at": dt.datetime.fromtimestamp(started, dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "duration_s": round(time.time() - started, 1),
            "config": {k: v for k, v in vars(self.config).items()},
            "machine": machine,
            "sshd_log_level": "INFO",
            "safetunnel_ran": self.st_enabled,
            "engines": self.engines,
            "direct": self.direct,
            "metrics": {k: m.to_json() for k, m in self.metrics.items()},
            "floors": judge_floors(self.metrics, self.config.tests, tuple(self.engines)),
            "share_exits": self.share_exits,
            "errors": self.errors,
            "notes": self.notes,
        }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in ("conn/s", "req/s", "errors", "threads"):
        return f"{value:.0f}"
    return f"{value:.3f}" if unit == "s" else f"{value:.2f}"


def table(report: dict[str, Any]) -> str:
    engines = report["engines"]
    rows = [("metric", "unit", "ssh -R", *(h for e in engines for h in (e, "/ssh")))]
    for metric in report["metrics"].values():
        agg = " (max)" if metric["aggregate"] == "max" else ""
        summary, ratios = metric["summary"], metric["ratio"]
        cells: list[str] = []
        for engine in engines:
            ratio = ratios.get(engine)
            cells.append(fmt(summary.get(engine, summary.get(ST)), metric["unit"]))
            cells.append(f"{ratio:.2f}x" if ratio else "-")
        rows.append(
            (metric["label"] + agg, metric["unit"], fmt(summary.get(SSH), metric["unit"]), *cells)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    direct = report["direct"]
    if direct:
        lines.append("")
        lines.append(
            "direct to the services (no forwarder): "
            + ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=-" for k, v in direct.items())
        )
    lines.append("")
    lines.append("floors:")
    for floor in report["floors"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[floor["pass"]]
        value = floor["value"]
        shown = (
            "-" if value is None else (f"{value:.2f}x" if floor["on"] == "ratio" else f"{value:g}")
        )
        lines.append(f"  {verdict}  {floor['engine']:<10} {floor['name']}  (measured {shown})")
    for error in report["errors"]:
        lines.append(f"error: {error}")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    machine = report["machine"]
    lines.append("")
    lines.append(
        f"{machine['cores']} cores, Python {machine['python']}, paramiko "
        f"{machine['paramiko_version']}, {machine['openssh']}; load average "
        f"{machine['loadavg_start'][0]:.2f} -> {machine['loadavg_end'][0]:.2f}; "
        f"{report['config']['rounds']} rounds, {report['duration_s']:.0f} s"
    )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 rounds, 64 MiB bulk, shorter runs (for a first look)",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where to write the JSON (default {DEFAULT_OUT.relative_to(REPO)})",
    )
    parser.add_argument("--rounds", type=int, help="A/B rounds (default 6, --quick 2)")
    parser.add_argument("--bulk-mib", type=int, help="bulk size in MiB (default 256, --quick 64)")
    parser.add_argument("--held", help="comma-separated held connection counts (default 500,1000)")
    parser.add_argument("--tests", help=f"comma-separated subset of {','.join(TESTS)}")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated safetunnel engines to measure (default {','.join(ENGINES)})",
    )
    parser.add_argument(
        "--only-ssh",
        action="store_true",
        help="measure the ssh -R half only (to check the harness)",
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the temp dir with the sshd/ssh/share logs"
    )
    args = parser.parse_args(argv)
    if args.tests and not set(args.tests.split(",")) <= set(TESTS):
        parser.error(f"--tests takes a subset of {','.join(TESTS)}")
    if not args.engines or not set(args.engines.split(",")) <= set(ENGINES):
        parser.error(f"--engines takes a subset of {','.join(ENGINES)}")
    return args


def make_config(args: argparse.Namespace) -> Config:
    config = Config.quick() if args.quick else Config()
    if args.rounds:
        config.rounds = args.rounds
    if args.bulk_mib:
        config.bulk_mib = args.bulk_mib
    if args.held:
        config.held = tuple(int(n) for n in args.held.split(","))
        config.held_max_connections = max(config.held_max_connections, max(config.held) + 100)
    if args.tests:
        config.tests = tuple(args.tests.split(","))
    config.only_ssh = args.only_ssh
    config.engines = tuple(dict.fromkeys(args.engines.split(",")))
    return config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    config = make_config(args)
    started = time.time()
    # ssh, sshd, the services and the load generator inherit this: 1,000 held connections need
    # about 2,000 descriptors in several of them.
    fd_limit = raise_fd_limit(max(65536, 4 * max(config.held, default=0)))
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="safetunnel-bench-"))
    bench = Bench(config, workdir)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    interrupted = False
    try:
        bench.setup()
        bench.run()
    except BenchError as exc:
        bench.errors.append(str(exc))
        log(f"error: {exc}")
    except KeyboardInterrupt:
        interrupted = True
        bench.errors.append("interrupted (Ctrl-C): the results are partial")
    finally:
        log("stopping everything")
        bench.teardown()
        signal.signal(signal.SIGTERM, previous)
        if args.keep_workdir:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report = bench.report(started, argv, machine, fd_limit)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nJSON written to {args.json_out}")
    if interrupted:
        return 130
    if config.only_ssh:
        return 0 if not bench.errors else 1
    return 0 if all(f["pass"] for f in report["floors"]) else 1


if __name__ == "__main__":
    sys.exit(main())
