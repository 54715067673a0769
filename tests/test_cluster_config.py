"""The balancer's configuration, the status report and the replica status, without starting any process
(tests/test_cluster.py runs them for real)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import engine.serving
from cluster import haproxy, report, status
from engine.serving.cache import RunCache

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def test_upstreams_are_named_in_order_or_by_the_operator():
    assert haproxy.parse_upstreams(["127.0.0.1:8601", "127.0.0.1:8602"]) == [
        haproxy.Upstream("r1", "127.0.0.1:8601"), haproxy.Upstream("r2", "127.0.0.1:8602")]
    assert haproxy.parse_upstreams(["gpu-a=10.0.0.11:8501", "[::1]:8502"]) == [
        haproxy.Upstream("gpu-a", "10.0.0.11:8501"), haproxy.Upstream("r2", "[::1]:8502")]


@pytest.mark.parametrize("items", [[], ["host"], ["host:0"], ["host:70000"], ["a b=host:1"], ["x=h:1", "x=h:2"],
                                   ["host:1\n    server evil 1.2.3.4:80"]])
def test_bad_upstreams_are_refused(items):
    with pytest.raises(ValueError):
        haproxy.parse_upstreams(items)


def test_the_configuration_has_sticky_sessions_health_checks_websockets_and_status():
    text = haproxy.render(haproxy.parse_upstreams(["127.0.0.1:8601", "127.0.0.1:8602"]), port=8500)
    assert "bind 127.0.0.1:8500" in text
    assert f"cookie {haproxy.COOKIE} insert indirect nocache" in text  # sticky sessions
    assert "option redispatch" in text  # a dead replica's visitors go to another
    assert "http-check send meth GET uri /_stcore/health" in text
    assert "timeout tunnel 1h" in text  # the websocket outlives long runs
    assert "stats uri /haproxy" in text and "stats auth" not in text
    assert "server r1 127.0.0.1:8601 cookie r1" in text and "server r2 127.0.0.1:8602 cookie r2" in text
    assert "use-server r2 if { var(txn.replica) -m str r2 }" in text
    assert not re.search(r"@[A-Z_]+@", text)  # every placeholder filled
    # fair use per client address: open and new sessions counted per source, a 429 page past each limit
    assert "http-request track-sc0 src if session" in text and "store conn_cur,http_req_rate(60s)" in text
    assert f"acl too_many src_conn_cur ge {haproxy.CLIENT_CONNS}\n" in text
    assert f"acl too_fast src_http_req_rate ge {haproxy.CLIENT_RATE}\n" in text
    assert "if session too_many || page too_many" in text and "if session too_fast || page too_fast" in text
    for page in re.findall(r'file "([^"]+)"', text):
        assert "<h1>" in Path(page).read_text()
    assert "option forwardfor" in text  # the client's address for the app
    limited = haproxy.render(haproxy.parse_upstreams(["h:1"]), port=80, client_conns=40, client_rate=600)
    assert "src_conn_cur ge 40\n" in limited and "src_http_req_rate ge 600\n" in limited
    with pytest.raises(ValueError):
        haproxy.render(haproxy.parse_upstreams(["h:1"]), port=80, client_conns=0)
    guarded = haproxy.render(haproxy.parse_upstreams(["h:1"]), port=80, bind="0.0.0.0", stats_auth="ops:s3cret")
    assert "bind 0.0.0.0:80" in guarded and "stats auth ops:s3cret" in guarded
    with pytest.raises(ValueError):
        haproxy.render(haproxy.parse_upstreams(["h:1"]), port=80, stats_auth="no colon")


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy is not installed (bash scripts/setup.sh --dev)")
def test_haproxy_accepts_the_rendered_configuration(tmp_path):
    config = tmp_path / "haproxy.cfg"
    rendered = subprocess.run([sys.executable, "-m", "cluster.haproxy", "--port", "8500", "--client-conns", "24",
                               "127.0.0.1:8601", "b=127.0.0.1:8602"], capture_output=True, text=True, check=True)
    assert "acl too_many src_conn_cur ge 24\n" in rendered.stdout
    config.write_text(rendered.stdout)
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_report_table_marks_unknown_values():
    entries = [{"replica": "r1", "address": "127.0.0.1:8601", "balancer": "UP", "check": "L7OK", "connections": 2,
                "sessions": 2, "runs_in_flight": None, "runs_queued": None, "reserved_mb": 310, "cached_mb": 0,
                "budget_mb": 3000, "rss_mb": 1130, "pid": 7, "uptime_s": 9},
               {"replica": "r2", "address": "127.0.0.1:8602", "balancer": "DOWN", "check": "L4CON", "connections": 0}]
    lines = report.table(entries).splitlines()
    assert lines[0].split() == report.COLUMNS
    assert lines[1].split() == ["r1", "127.0.0.1:8601", "UP", "L7OK", "2", "2", "-", "-", "310", "0", "3000",
                                 "1130", "7", "9"]
    assert lines[2].split()[:5] == ["r2", "127.0.0.1:8602", "DOWN", "L4CON", "0"]
    assert lines[2].split()[5:] == ["-"] * 9


def test_replica_status_reports_the_serving_status(monkeypatch):
    monkeypatch.setenv(status.REPLICA_ENV, "r7")
    monkeypatch.delitem(sys.modules, "engine.serving", raising=False)  # no visitor yet: the engine not imported
    idle = status.replica_status()
    assert idle["replica"] == "r7" and idle["runs_in_flight"] == 0 and idle["runs_queued"] == 0
    assert idle["sessions"] == 0 and idle["state"] == "NOT_STARTED" and idle["rss_mb"] > 0

    budget = types.ModuleType("engine.serving")
    budget.status = lambda: {"runs_in_flight": 2, "runs_queued": 5, "budget_mb": 3000}
    monkeypatch.setitem(sys.modules, "engine.serving", budget)
    assert status.replica_status()["runs_queued"] == 5 and status.replica_status()["budget_mb"] == 3000


class _OneMB:
    def storages(self):
        yield id(self), 1 << 20


def test_the_serving_status_counts_the_run_caches_of_the_process():
    cache = RunCache(budget_bytes=100 << 20, poll_s=0.01)
    before = engine.serving.status()
    gate = threading.Event()

    def compute(cancel, prefix):
        gate.wait(5)
        return _OneMB()

    threads = [threading.Thread(target=cache.get, args=(f"t{i}", compute, 60 << 20)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while cache.status().queued < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    during = engine.serving.status()
    assert during["runs_in_flight"] - before["runs_in_flight"] == 1  # 60 MB of 100: one at a time
    assert during["runs_queued"] - before["runs_queued"] == 2
    gate.set()
    for t in threads:
        t.join()
    after = engine.serving.status()
    assert after["runs_in_flight"] == before["runs_in_flight"] and after["runs_queued"] == before["runs_queued"]
    assert after["cached_runs"] - before["cached_runs"] == 3
