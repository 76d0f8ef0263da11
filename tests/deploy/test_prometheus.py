"""deploy/prometheus and deploy/grafana against the real thing.

* ``promtool`` checks the rules and the example configuration, and runs the rules'
  unit tests (rules.test.yml: each alert fires on what should trigger it);
* a real Prometheus (Debian's binary) scrapes a running hub and loads the rules: every
  rule is evaluated without error, the recording rules produce series, no alert fires
  on a healthy hub, and every query of the Grafana dashboard runs without error;
* every metric the dashboard and the rules name is one the hub exposes (or one of the
  few that Prometheus or another part of roomlog makes: ``up``, webhooks).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.support import ROOT, TIMEOUT, Server, bearer, free_port, post_command, unique_room

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "roomlog.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
WAIT = 60.0  # seconds: upper bound for Prometheus to start, scrape and evaluate
#: Metrics named in the rules that the hub does not expose itself.
NOT_FROM_THE_HUB = {"up",  # Prometheus's own, per target
                    # one sample per webhook endpoint: none while there is none
                    "roomlog_webhook_endpoint_disabled"}


def promtool(*args: str | Path) -> str:
    done = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_rules_config_and_rule_tests() -> None:
    assert "SUCCESS" in promtool("check", "rules", RULES)
    assert "SUCCESS" in promtool("check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", DEPLOY / "prometheus" / "rules.test.yml")


def rules(prometheus: str) -> list[dict[str, Any]]:
    """Every rule as Prometheus loaded it (``query`` is its expression)."""
    groups = _get(prometheus, "/api/v1/rules")["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    """Every query of the dashboard, with Grafana's variables given values."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [re.sub(r"label_values\((\w+),\s*(\w+)\)", r"group by (\2) (\1)",
                     v["query"]["query"])
              for v in board["templating"]["list"] if v["type"] == "query"]
    return [e.replace("$__rate_interval", "1m").replace("$instance", ".*") for e in exprs]


def metric_names(expr: str) -> set[str]:
    """The metrics an expression reads (not labels, functions or recorded series)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"(?<![\w:])((?:roomlog|process|python)_[a-z0-9_]+|up)(?![\w:])"
                          r"(?!\s*[(=!])", without_strings))


# ---------------------------------------------------------------------------
# a hub with some traffic, and Prometheus scraping it


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("hub")).start()
    try:
        room = unique_room("queue")

        async def traffic() -> None:
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                reply = await post_command(http, srv, room, "request.submit",
                                           {"song_id": "s", "title": "T", "artist": "A"})
                assert reply.status_code == 200, reply.text
                chat = unique_room()
                reply = await http.post(f"{srv.base}/v1/rooms/{chat}/messages",
                                        json={"id": "m1", "data": 1},
                                        headers=bearer("u1", Role.GUEST))
                assert reply.status_code == 201, reply.text

        asyncio.run(traffic())
        yield srv
    finally:
        srv.stop()
    srv.assert_clean_log()


def scrape(srv: Server) -> set[str]:
    """The names of every sample the hub exposes."""
    text = httpx.get(f"{srv.base}/metrics", timeout=TIMEOUT).text
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, hub: Server) -> Iterator[str]:
    """Prometheus scraping the hub every second with the rules loaded (evaluated every
    second too); its base URL."""
    where = tmp_path_factory.mktemp("prometheus")
    (where / "rules.yml").write_text(re.sub(r"interval: \d+s", "interval: 1s",
                                            RULES.read_text()))
    (where / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{where / "rules.yml"}]
scrape_configs:
  - job_name: roomlog
    static_configs: [{{targets: ["127.0.0.1:{hub.port}"]}}]
""")
    port = free_port()
    log = (where / "prometheus.log").open("w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={where / 'prometheus.yml'}",
                             f"--storage.tsdb.path={where / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _get(base, "/-/ready") is not None, "Prometheus ready",
              where / "prometheus.log")
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _get(base: str, path: str, **params: str) -> Any:
    try:
        reply = httpx.get(base + path, params=params, timeout=TIMEOUT)
    except httpx.TransportError:
        return None
    if path.startswith("/api/"):
        return reply.json()
    return reply.text if reply.status_code == 200 else None


def until(done: Any, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT}s " + (
            log.read_text() if log else "")
        time.sleep(0.2)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    body = _get(base, "/api/v1/query", query=expr)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------


def test_every_rule_evaluates_without_error(prometheus: str) -> None:
    until(lambda: query(prometheus, 'up{job="roomlog"} == 1'), "the hub scraped")
    loaded = rules(prometheus)
    assert len(loaded) == RULES.read_text().count("expr:")  # all of them loaded
    for rule in loaded:
        query(prometheus, rule["query"])  # fails on any error

    def all_evaluated() -> bool:
        for rule in rules(prometheus):
            assert rule["health"] != "err", rule
        return all(rule["health"] == "ok" for rule in rules(prometheus))

    until(all_evaluated, "every rule evaluated once")
    # the recording rules record: messages were committed before the scrapes began
    until(lambda: query(prometheus, "instance:roomlog_messages_in:rate1m"),
          "a recorded series")
    assert query(prometheus, 'roomlog_database_up{job="roomlog"}')[0]["value"][1] == "1"
    firing = [a for a in _get(prometheus, "/api/v1/alerts")["data"]["alerts"]
              if a["state"] != "inactive"]
    assert not firing, firing  # a healthy hub


def test_every_dashboard_query_runs(prometheus: str) -> None:
    until(lambda: query(prometheus, 'up{job="roomlog"} == 1'), "the hub scraped")
    queries = dashboard_queries()
    assert len(queries) > 30
    for expr in queries:
        query(prometheus, expr)
    # and the panels show data: the version panel, for one
    assert query(prometheus, 'count by (version) (roomlog_build_info{instance=~".*"})')


def test_the_dashboard_and_rules_name_only_metrics_the_hub_exposes(
        hub: Server, prometheus: str) -> None:
    exposed = scrape(hub)
    named = set().union(*map(metric_names, dashboard_queries()))
    named |= set().union(*(metric_names(r["query"]) for r in rules(prometheus)))
    assert {"roomlog_connections", "roomlog_deliver_latency_seconds_bucket",
            "roomlog_commands_total", "process_open_fds"} <= named  # the parsing works
    missing = named - exposed - NOT_FROM_THE_HUB
    assert not missing, f"named but not exposed: {sorted(missing)}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for topic in ("connections", "rooms", "messages in and out", "delivery latency",
                  "bus connected", "bus lag", "gap fills", "slow", "commands", "rejections",
                  "commit latency", "requests by route"):
        assert topic in titles, topic
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
