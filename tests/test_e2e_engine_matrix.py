"""The existing end-to-end behaviours again, with every share in the sandbox carried by the
paramiko engine (``engine = "paramiko"`` in config.toml, so the same test bodies run unchanged).

``auto`` picks the OpenSSH engine, so the other modules' cases run on it; each case here reuses a
test function of another module, so the two engines are held to exactly the same assertions.
The started event proves which engine ran, and an ``ssh`` on PATH that leaves a mark proves that
OpenSSH's client never did (also for the cases that end before a share starts).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_e2e_registry_background as background_cases
import test_e2e_registry_kill as kill_cases
import test_e2e_registry_list as list_cases
import test_e2e_share_gate as gate_cases
import test_e2e_share_lifecycle as lifecycle
import test_e2e_share_prompts as prompt_cases
import test_e2e_share_refusals as refusals
from conftest import Sandbox
from e2e import E2E
from sshd import SSHD, SSHDFactory

pytestmark = pytest.mark.sshd
pty_share = prompt_cases.pty_share  # the prompt cases' fixture, visible to this module


@pytest.fixture
def paramiko_e2e(sandbox: Sandbox, e2e: E2E, tmp_path: Path) -> Iterator[E2E]:
    """The e2e harness with config.toml saying ``engine = "paramiko"``; at the end, every share
    that started must have said so, and OpenSSH's ``ssh`` must never have run."""
    sandbox.config_dir.mkdir(mode=0o700, exist_ok=True)
    config = sandbox.config_dir / "config.toml"
    config.write_text('engine = "paramiko"\n')
    config.chmod(0o600)
    spy, ran = tmp_path / "spy-bin", tmp_path / "ssh-ran"
    spy.mkdir()
    (spy / "ssh").write_text(f'#!/bin/sh\ntouch "{ran}"\nexec "{shutil.which("ssh")}" "$@"\n')
    (spy / "ssh").chmod(0o755)
    sandbox.env["PATH"] = f"{spy}:{sandbox.env['PATH']}"
    yield e2e
    assert not ran.exists(), "the OpenSSH client ran under engine = paramiko"
    engines = {line.split('"engine":"')[1].split('"')[0] for line in _started_lines(e2e)}
    assert engines <= {"paramiko"}, engines


def _started_lines(e2e: E2E) -> list[str]:
    lines = [line for proc in e2e.procs for line in proc.stdout_lines]
    lines += [line for out in e2e.outputs for line in out.stdout.splitlines()]
    return [line.replace(" ", "") for line in lines if '"event":"started"' in line.replace(" ", "")]


def test_ttl_expiry(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_ttl_expiry_exits_0_and_releases_the_port(paramiko_e2e, shared_sshd)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130), (signal.SIGHUP, 0)]
)
def test_signals(paramiko_e2e: E2E, shared_sshd: SSHD, sig: signal.Signals, code: int) -> None:
    lifecycle.test_signals_stop_the_share_and_release_the_port(paramiko_e2e, shared_sshd, sig, code)


def test_open_connection_closed_at_teardown(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_open_connection_is_closed_at_teardown(paramiko_e2e, shared_sshd)


@pytest.mark.slow
def test_kill_9_frees_the_port(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_kill_9_of_the_share_lets_sshd_free_the_port(paramiko_e2e, shared_sshd)


@pytest.mark.slow
def test_ssh_loss(paramiko_e2e: E2E, sshd: SSHD) -> None:
    lifecycle.test_ssh_loss_exits_8_within_the_watchdog_bound(paramiko_e2e, sshd)


def test_max_connections(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_max_connections_refuses_a_third_while_two_are_open(paramiko_e2e, shared_sshd)


def test_max_failures(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_max_failures_stops_the_tunnel(paramiko_e2e, shared_sshd)


def test_idle_limit(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    lifecycle.test_idle_limit_stops_after_no_traffic(paramiko_e2e, shared_sshd)


def test_gate_refuses_without_the_token(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_no_token_or_wrong_token_gets_401_and_the_service_sees_nothing(
        paramiko_e2e, shared_sshd
    )


def test_gate_token_carriers(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_every_token_carrier_works_and_the_token_never_reaches_the_service(
        paramiko_e2e, shared_sshd
    )


def test_gate_raw_tcp(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_raw_tcp_preamble_forwards_the_bytes_after_it_intact(paramiko_e2e, shared_sshd)


def test_gate_keepalive_requests(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_keepalive_second_request_without_token_is_refused(paramiko_e2e, shared_sshd)


def test_gate_server_first(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    gate_cases.test_server_first_protocol_gets_its_greeting_after_the_preamble(
        paramiko_e2e, shared_sshd
    )


def test_kill_by_id(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    kill_cases.test_kill_id_ends_the_process_frees_the_port_and_removes_record_and_socket(
        paramiko_e2e, shared_sshd
    )


def test_kill_all(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    kill_cases.test_kill_all_stops_both_tunnels(paramiko_e2e, shared_sshd)


def test_status_counters(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    list_cases.test_status_counters_move_after_requests(paramiko_e2e, shared_sshd)


def test_background_shares_listed(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    list_cases.test_two_background_shares_are_listed_with_correct_fields(paramiko_e2e, shared_sshd)


def test_background_unknown_host_key(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    background_cases.test_background_unknown_host_key_is_refused_non_interactively(
        paramiko_e2e, shared_sshd
    )


def test_extend(paramiko_e2e: E2E, shared_sshd: SSHD) -> None:
    kill_cases.test_extend_moves_expiry_by_exactly_the_amount_and_the_tunnel_honours_it(
        paramiko_e2e, shared_sshd
    )


def test_unknown_host_key_exit_4(paramiko_e2e: E2E, sshd: SSHD, tmp_path: Path) -> None:
    refusals.test_unknown_host_key_exits_4_with_fingerprint_and_trust_command(
        paramiko_e2e, sshd, tmp_path
    )


def test_changed_host_key_exit_4(paramiko_e2e: E2E, sshd: SSHD, tmp_path: Path) -> None:
    refusals.test_changed_host_key_exits_4(paramiko_e2e, sshd, tmp_path)


def test_unknown_host_key_typed_yes(
    paramiko_e2e: E2E, sshd: SSHD, pty_share: prompt_cases.StartPty, tmp_path: Path
) -> None:
    prompt_cases.test_unknown_host_key_typed_yes_pins_in_own_known_hosts_only(
        paramiko_e2e, sshd, pty_share, tmp_path
    )


def test_unknown_host_key_answered_no(
    paramiko_e2e: E2E, sshd: SSHD, pty_share: prompt_cases.StartPty, tmp_path: Path
) -> None:
    prompt_cases.test_unknown_host_key_answered_no_exits_4(paramiko_e2e, sshd, pty_share, tmp_path)


def test_gatewayports_widening_exit_6(paramiko_e2e: E2E, sshd_factory: SSHDFactory) -> None:
    refusals.test_gatewayports_yes_without_public_exits_6_and_unbinds(paramiko_e2e, sshd_factory)


def test_permitlisten_exit_6(paramiko_e2e: E2E, sshd_factory: SSHDFactory) -> None:
    refusals.test_permitlisten_restricted_key_refuses_another_port(paramiko_e2e, sshd_factory)


def test_remote_port_taken_exit_6(paramiko_e2e: E2E, sshd: SSHD) -> None:
    refusals.test_remote_port_taken_on_ipv4_loopback_is_refused_not_half_bound(paramiko_e2e, sshd)
