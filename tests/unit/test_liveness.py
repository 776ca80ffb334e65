"""The loops' liveness (what systemd's watchdog is pinged on) and the sd_notify datagrams."""

from __future__ import annotations

import os
import socket
import time

from payverify.liveness import Liveness
from payverify.monitoring.metrics import render_metrics, thread_errors
from payverify.monitoring.systemd import Notifier


def test_a_loop_is_stalled_once_quiet_for_longer_than_the_allowance_plus_what_it_announced():
    live = Liveness(allowance=0.2)
    live.tick("notice")
    live.tick("mail.1", quiet=60)
    assert live.stalled() == []
    time.sleep(0.3)
    assert live.stalled() == ["notice"]  # mail.1 said it would back off for a minute
    live.tick("notice")
    live.done("mail.1")
    assert live.stalled() == []


def test_errors_are_counted_by_loop_and_every_loop_has_a_sample():
    live = Liveness()
    live.failed("mail")
    live.failed("mail")
    text = render_metrics([thread_errors(live.errors())])
    assert 'payverify_thread_errors_total{loop="mail"} 2' in text
    assert 'payverify_thread_errors_total{loop="notice"} 0' in text
    assert 'payverify_thread_errors_total{loop="housekeeping"} 0' in text
    assert "# TYPE payverify_thread_errors_total counter" in text


def test_without_notify_socket_nothing_is_sent_and_there_is_no_watchdog():
    notifier = Notifier({"WATCHDOG_USEC": "30000000"})
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_seconds is None


def test_datagrams_reach_the_socket_and_the_watchdog_timeout_is_read(tmp_path):
    path = str(tmp_path / "n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "90000000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_seconds == 90
        assert notifier.notify("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_an_abstract_socket_name_and_another_process_s_watchdog():
    name = f"payverify-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "1"})
        assert notifier.watchdog_seconds is None  # the watchdog is pid 1's, not ours
        assert notifier.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
