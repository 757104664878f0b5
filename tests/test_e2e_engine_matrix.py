"""The existing end-to-end behaviours again, with every share in the sandbox carried by the
OpenSSH engine (``engine = "openssh"`` in config.toml, so the same test bodies run unchanged).

Each case reuses a test function of another module, so the two engines are held to exactly the
same assertions; the started event proves which engine ran.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import test_e2e_registry_kill as kill_cases
import test_e2e_registry_list as list_cases
import test_e2e_share_gate as gate_cases
import test_e2e_share_lifecycle as lifecycle
from conftest import Sandbox
from e2e import E2E
from sshd import SSHD

pytestmark = pytest.mark.sshd


@pytest.fixture
def openssh_e2e(sandbox: Sandbox, e2e: E2E) -> Iterator[E2E]:
    """The e2e harness with config.toml saying ``engine = "openssh"``; at the end, every share
    that started must have said so (and one must have started)."""
    sandbox.config_dir.mkdir(mode=0o700, exist_ok=True)
    config = sandbox.config_dir / "config.toml"
    config.write_text('engine = "openssh"\n')
    config.chmod(0o600)
    yield e2e
    engines = {line.split('"engine":"')[1].split('"')[0] for line in _started_lines(e2e)}
    assert engines == {"openssh"}, engines


def _started_lines(e2e: E2E) -> list[str]:
    lines = [line for proc in e2e.procs for line in proc.stdout_lines]
    lines += [line for out in e2e.outputs for line in out.stdout.splitlines()]
    return [line.replace(" ", "") for line in lines if '"event":"started"' in line.replace(" ", "")]


def test_ttl_expiry(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_ttl_expiry_exits_0_and_releases_the_port(openssh_e2e, shared_sshd)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130), (signal.SIGHUP, 0)]
)
def test_signals(openssh_e2e: E2E, shared_sshd: SSHD, sig: signal.Signals, code: int) -> None:
    lifecycle.test_signals_stop_the_share_and_release_the_port(openssh_e2e, shared_sshd, sig, code)


def test_open_connection_closed_at_teardown(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_open_connection_is_closed_at_teardown(openssh_e2e, shared_sshd)


@pytest.mark.slow
def test_kill_9_frees_the_port(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_kill_9_of_the_share_lets_sshd_free_the_port(openssh_e2e, shared_sshd)


@pytest.mark.slow
def test_ssh_loss(openssh_e2e: E2E, sshd: SSHD) -> None:
    lifecycle.test_ssh_loss_exits_8_within_the_watchdog_bound(openssh_e2e, sshd)


def test_max_connections(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_max_connections_refuses_a_third_while_two_are_open(openssh_e2e, shared_sshd)


def test_max_failures(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_max_failures_stops_the_tunnel(openssh_e2e, shared_sshd)


def test_idle_limit(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_idle_limit_stops_after_no_traffic(openssh_e2e, shared_sshd)


def test_gate_refuses_without_the_token(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_no_token_or_wrong_token_gets_401_and_the_service_sees_nothing(
        openssh_e2e, shared_sshd
    )


def test_gate_token_carriers(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_every_token_carrier_works_and_the_token_never_reaches_the_service(
        openssh_e2e, shared_sshd
    )


def test_gate_raw_tcp(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_raw_tcp_preamble_forwards_the_bytes_after_it_intact(openssh_e2e, shared_sshd)


def test_gate_keepalive_requests(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_keepalive_second_request_without_token_is_refused(openssh_e2e, shared_sshd)


def test_gate_server_first(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_server_first_protocol_gets_its_greeting_after_the_preamble(
        openssh_e2e, shared_sshd
    )


def test_kill_by_id(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    kill_cases.test_kill_id_ends_the_process_frees_the_port_and_removes_record_and_socket(
        openssh_e2e, shared_sshd
    )


def test_kill_all(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    kill_cases.test_kill_all_stops_both_tunnels(openssh_e2e, shared_sshd)


def test_status_counters(openssh_e2e: E2E, shared_sshd: SSHD) -> None:
    list_cases.test_status_counters_move_after_requests(openssh_e2e, shared_sshd)
