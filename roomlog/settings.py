"""Settings: every knob with its environment variable and default.

``Settings.from_env()`` reads ``ROOMLOG_<NAME>`` for each field (durations in
seconds, sizes in bytes). The README's configuration table is generated from
the same list (``roomlog settings``), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Settings"]


def _doc(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    # Where things live
    database_url: str = _doc(
        "sqlite+aiosqlite:///roomlog.db",
        "SQLAlchemy URL of the log: sqlite+aiosqlite:///file.db or "
        "postgresql+asyncpg://user@host/db",
    )
    auto_migrate: str = _doc(
        "auto",
        "migrate the schema at start: 'auto' (only for SQLite), 'yes' or 'no'",
    )
    secret: str = _doc(
        "",
        "HS256 secret for tokens; empty: a development secret kept in secret_file",
    )
    secret_file: str = _doc(".roomlog-secret", "where the development secret is kept")
    secret_roles: str = _doc(
        "",
        "roles tokens signed with the secret (no `kid`) may carry, comma-separated; empty: "
        "every role; `none`: such tokens are refused",
    )
    backends_file: str = _doc(
        "",
        "JSON file of backends: their token keys and command hooks (docs/backends.md); "
        "empty: none",
    )
    token_max_ttl: float = _doc(90 * 86400.0, "longest token lifetime accepted: a token whose "
                                              "`exp` is further ahead is UNAUTHORIZED")
    redis_url: str = _doc(
        "",
        "Redis for several instances: redis://host:6379/0; empty: one instance, in-process bus",
    )
    redis_prefix: str = _doc("roomlog:", "prefix of every Redis key and channel")
    bus: str = _doc("auto", "the bus between instances and workers: 'memory' (one process), "
                            "'redis' (redis_url), 'postgres' (LISTEN/NOTIFY on the log's "
                            "PostgreSQL database) or 'auto': redis with a redis_url, else "
                            "postgres with several workers, else memory")
    workers: int = _doc(1, "server processes sharing the port (SO_REUSEPORT; `--workers`); "
                           "more than one needs PostgreSQL")
    db_pool_size: int = _doc(10, "database connections kept open per process (PostgreSQL)")
    db_pool_overflow: int = _doc(10, "connections opened beyond db_pool_size under load, "
                                     "closed when returned")
    db_pool_timeout: float = _doc(10.0, "seconds an operation waits for a free connection "
                                        "before it fails UNAVAILABLE (retryable)")
    host: str = _doc("127.0.0.1", "address `roomlog serve` binds")
    port: int = _doc(8000, "port `roomlog serve` binds ($PORT overrides it)")
    log_level: str = _doc("info", "logging level: debug, info, warning, error or critical "
                                  "(`--log-level`)")
    log_format: str = _doc("text", "log lines as 'text' or 'json' (one object per line, with "
                                   "request_id and conn; `--log-format`)")

    # Connections
    max_header_bytes: int = _doc(65_536, "largest HTTP request head (request line and headers; "
                                         "431 above), WebSocket handshakes included")
    header_timeout: float = _doc(10.0, "seconds a client has to send a request head once it "
                                       "started (408 after)")
    connect_timeout: float = _doc(10.0, "seconds a new WebSocket has to send `connect`")
    ping_interval: float = _doc(15.0, "seconds between server WebSocket pings")
    ping_timeout: float = _doc(10.0, "seconds without a pong before a link is closed as dead")
    ws_close_timeout: float = _doc(5.0, "seconds a closing WebSocket has to take its last frames "
                                        "and close frame (4008 included) before its TCP "
                                        "connection is aborted")
    max_frame_bytes: int = _doc(1_048_576, "largest inbound WebSocket frame (close 1009 above)")
    max_data_bytes: int = _doc(65_536, "largest message data, JSON-encoded (PAYLOAD_TOO_LARGE)")
    max_nesting_depth: int = _doc(64, "deepest nesting of arrays and objects in message data "
                                      "(BAD_FRAME beyond) and command args (INVALID_ARGS); at "
                                      "most 200: stored events wrap args, and the encoder stops "
                                      "at 254")
    max_subscriptions: int = _doc(100, "rooms one connection may subscribe to")
    max_bad_frames: int = _doc(20, "bad frames a connection may send before close 4002")
    max_connections_per_user: int = _doc(16, "WebSockets, SSE streams and waiting long-polls "
                                              "one user may hold on an instance "
                                              "(LIMIT_EXCEEDED, close 4029 above; 0: no limit)")
    max_connections_per_address: int = _doc(0, "requests and WebSockets one client address "
                                               "may hold open on an instance, before any token "
                                               "is read (0: no limit; set it only where the hub "
                                               "sees client addresses: directly, or through a "
                                               "proxy in forwarded_allow_ips)")
    forwarded_allow_ips: str = _doc("127.0.0.1", "trusted proxies, comma-separated ('*': any): "
                                                 "from them X-Forwarded-For names the client "
                                                 "address the per-address limit counts")
    subscribe_rate: float = _doc(20.0, "subscribes and unsubscribes per second per user "
                                       "(RATE_LIMITED beyond)")
    subscribe_burst: int = _doc(250, "subscribe and unsubscribe burst per user")
    presence_rate: float = _doc(5.0, "presence queries per second per user")
    presence_burst: int = _doc(20, "presence query burst per user")
    read_rate: float = _doc(20.0, "HTTP reads (long-polls, SSE opens, state, room info, "
                                  "analytics, photos) per second per user")
    read_burst: int = _doc(100, "HTTP read burst per user")
    staff_limit_factor: float = _doc(10.0, "services and admins get this many times every "
                                           "per-user limit (0: no limits for them)")
    max_rate_strikes: int = _doc(100, "RATE_LIMITED answers a WebSocket may get (one more per "
                                      "second) before it is closed with 4029 (0: never closed)")
    gc_freeze: bool = _doc(True, "freeze the objects made while starting (`roomlog serve`), so "
                                 "full collections skip them: ~100 ms pauses become ~1 ms, "
                                 "see docs/decisions.md")
    gc_tuning: bool = _doc(False, "also collect the young generation less often (`roomlog "
                                  "serve`): fewer collector passes under heavy fan-out, see "
                                  "docs/decisions.md")
    ws_compression: bool = _doc(False, "permessage-deflate (costs CPU per send on fan-out; "
                                       "served by the 'asgi' WebSocket engine)")
    ws_engine: str = _doc("native", "who serves /ws under `roomlog serve`: 'native' (a protocol "
                                    "class of the hub's own, below ASGI: ~6 KiB and one "
                                    "shared ping timer per idle connection) or 'asgi' (the "
                                    "Starlette endpoint on uvicorn's WebSocket protocol)")
    websockets: bool = _doc(True, "accept WebSockets; off: /ws refuses every handshake (HTTP "
                                  "403), as a hostile proxy would, and clients poll instead")

    # Outbox: what a slow client may hold before it is closed with 4008
    outbox_max_messages: int = _doc(5000, "frames queued for one connection")
    outbox_max_bytes: int = _doc(8_388_608, "bytes queued for one connection")
    coalesce_max_frames: int = _doc(512, "frames joined into one WebSocket frame at most")

    # Publishing
    publish_rate: float = _doc(200.0, "publishes and commands per second per user, over every "
                                      "connection and transport (and every instance, with "
                                      "Redis): RATE_LIMITED beyond")
    publish_burst: int = _doc(400, "publish and command burst per user")
    max_inflight: int = _doc(256, "unacknowledged publishes per connection before reads pause")
    commit_batch: int = _doc(500, "publishes or commands committed in one transaction at most")
    commit_lanes: str = _doc(
        "auto", "plain rooms commit in this many lanes (by a hash of the name), a lane's "
                "publishes to all its rooms together (one statement on PostgreSQL, one "
                "transaction on SQLite), one in flight per lane (so "
                "a room whose lock another instance holds delays its lane); 0: each room "
                "its own transactions; 'auto': 1 on SQLite (one writer anyway), 4 on "
                "PostgreSQL")
    snapshot_every: int = _doc(100, "events between state snapshots of a domain room")
    state_cache_size: int = _doc(1000, "domain room states kept in memory per room kind (the "
                                       "least recently used go first and are rebuilt from "
                                       "their snapshot)")
    room_cache_size: int = _doc(10_000, "room ids kept in memory (the least recently used go "
                                        "first and are looked up again)")

    # Reading
    page_size: int = _doc(500, "messages per log read (replay pages, long-poll default)")
    max_page_size: int = _doc(1000, "largest `limit` a long-poll request may ask for")
    max_wait: float = _doc(60.0, "longest long-poll `wait` in seconds")
    sse_keepalive: float = _doc(15.0, "seconds between SSE keep-alive comments")
    live_buffer: int = _doc(10_000, "live messages held per subscriber while it replays")
    read_concurrency: int = _doc(4, "log page reads (and as many head lookups) of subscribers "
                                    "catching up in flight at once per process; the same room "
                                    "and position asked again while one waits shares it (a "
                                    "reconnect storm reads each page once)")

    # Admission: refuse handshakes quickly when saturated
    admission_max_lag: float = _doc(0.5, "event-loop lag in seconds above which new "
                                         "WebSocket handshakes are refused with HTTP 503 and "
                                         "Retry-After (0: never)")
    admission_retry_after: int = _doc(1, "seconds a refused client is told to wait at "
                                         "least (Retry-After: this to twice this, spread); "
                                         "clients add jitter")

    # Several instances (with redis_url)
    reorder_wait: float = _doc(0.1, "seconds an out-of-order gap may wait for the bus before "
                                    "it is read from the log")
    bus_check_interval: float = _doc(5.0, "seconds between checks of active rooms against the "
                                          "log (bounds what a lost bus message can delay)")
    bus_poll_interval: float = _doc(0.5, "seconds between log polls of active rooms while "
                                         "Redis is unreachable")
    bus_ping_interval: float = _doc(1.0, "seconds between pings on the Redis pub/sub link")
    bus_ping_timeout: float = _doc(2.0, "seconds without an answer before Redis counts as down")
    bus_reconnect_max: float = _doc(5.0, "longest wait between Redis reconnect attempts")
    bus_outbox: int = _doc(10_000, "publishes queued for Redis before the oldest is dropped")
    presence_ttl: float = _doc(15.0, "seconds before a dead instance's presence entries expire")
    drain_timeout: float = _doc(10.0, "seconds SIGTERM waits for in-flight writes before closing")
    ban_reload_interval: float = _doc(5.0, "seconds between reloads of the ban list from the "
                                           "database: how late a ban whose broadcast was lost "
                                           "holds on an instance")
    ready_timeout: float = _doc(2.0, "seconds /health/ready waits for a write transaction to "
                                     "commit before it answers 503")

    # Web app
    web_dir: str = _doc("", "directory served at / (the web app) and /client/ (the browser "
                            "client); empty: clients/ of this source tree, if present")
    web_token_url: str = _doc("", "the operator's token endpoint the pages renew their tokens "
                                  "from (clients/README.md, 'Tokens for the pages'); served to "
                                  "them in /config.json; empty: tokens come with the link")

    # Browsers on other origins (roomlog/cors.py)
    cors_origins: str = _doc("", "origins whose pages may call the HTTP API from a browser "
                                 "(CORS), comma-separated scheme://host[:port]; `*`: any "
                                 "page; empty: none (only the hub's own pages)")
    cors_max_age: int = _doc(600, "seconds a browser may cache a CORS preflight answer")
    # The operator's console
    console_report_interval: float = _doc(2.0, "seconds between each instance's figures for "
                                               "the console's overview (broadcast on the bus)")
    console_scan_max: int = _doc(10_000, "messages one filtered page of a room's log in the "
                                         "console looks at, at most (then it says where to "
                                         "go on)")

    # Repair rooms
    media_dir: str = _doc("media", "directory of uploaded repair photos (one folder per room)")
    max_upload_bytes: int = _doc(5_242_880, "largest photo upload (PAYLOAD_TOO_LARGE above)")
    repair_sla: str = _doc("received=86400,diagnosing=172800,repairing=259200,"
                           "quality_check=86400",
                           "the longest a ticket should spend in a status, as status=seconds, "
                           "comma-separated (time on the customer's side is not named: "
                           "awaiting_approval, ready_for_pickup); longer is an SLA breach in "
                           "/v1/repairs/stats and on the repair statistics page; empty: none")

    # Command hooks (docs/backends.md)
    hook_timeout: float = _doc(5.0, "seconds a command hook has to answer (a hook may set "
                                    "its own); then UNAVAILABLE, or allow if it fails open")
    hook_max_connections: int = _doc(100, "connections to one command hook at most")
    hook_max_per_user: int = _doc(8, "commands of one user that may wait for command hooks at "
                                     "once (services and admins: no limit); more are "
                                     "RATE_LIMITED")

    # Webhooks (docs/backends.md#webhooks)
    webhook_timeout: float = _doc(5.0, "seconds a webhook receiver has to answer 2xx; later is "
                                       "a failure, retried")
    webhook_retry_base: float = _doc(1.0, "seconds before a failed webhook delivery's first "
                                          "retry; doubled per failure, with jitter")
    webhook_retry_max: float = _doc(300.0, "longest wait between two attempts of a webhook "
                                           "delivery (also caps a receiver's Retry-After)")
    webhook_horizon: float = _doc(86400.0, "seconds a webhook room may keep failing before "
                                           "its endpoint is disabled and operators are told")
    webhook_allow_private: bool = _doc(False, "allow webhook URLs that resolve to loopback, "
                                              "link-local or private addresses")
    webhook_lease_ttl: float = _doc(10.0, "seconds an instance's lease on a webhook endpoint "
                                          "lasts unrenewed: how soon another takes over from "
                                          "a dead one (PostgreSQL)")
    webhook_poll_interval: float = _doc(1.0, "seconds between scans for rooms a webhook is "
                                             "behind in: how late commits of other instances "
                                             "may be delivered")
    webhook_cursor_flush: float = _doc(0.2, "seconds between writes of webhook cursors: what a "
                                            "crash may deliver again")
    webhook_batch_max: int = _doc(1, "messages per webhook delivery for endpoints that do not "
                                     "set batch_max (1: one message, one webhook-id)")
    webhook_max_in_flight: int = _doc(32, "deliveries (rooms) of one webhook endpoint in "
                                          "flight at once")
    webhook_attempts_kept: int = _doc(100, "recent attempts kept per webhook endpoint for "
                                           "operators")
    # Payments of queue rooms (docs/queue.md, "Paid requests")
    payment_refund_deadline: float = _doc(900.0, "seconds a refund may stay due or failed "
                                                 "before the reconciler asks the backend again "
                                                 "(payment.retry)")
    payment_reconcile_interval: float = _doc(60.0, "seconds between reconciler runs on each "
                                                   "instance (0: never)")
    payment_reconcile_horizon: float = _doc(30 * 86400.0, "rooms that took a payment in the "
                                                          "last this many seconds are "
                                                          "reconciled and listed")

    # Retention and idempotency
    retention_max_messages: int = _doc(100_000, "messages kept per room (0: no limit)")
    retention_max_age: float = _doc(7 * 86400.0, "seconds a message is kept (0: forever)")
    retention_interval: float = _doc(60.0, "seconds between age-based trim sweeps")
    idempotency_ttl: float = _doc(86400.0, "seconds a client id is remembered for retries")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``ROOMLOG_*`` variables; keyword overrides win over the env."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("ROOMLOG_" + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.type, raw, "ROOMLOG_" + f.name.upper())
        if "PORT" in env and "ROOMLOG_PORT" not in env:
            values["port"] = _convert("int", env["PORT"], "PORT")
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrates_on_start(self) -> bool:
        if self.auto_migrate == "auto":
            return self.is_sqlite
        return self.auto_migrate in ("yes", "true", "1")

    @property
    def lanes(self) -> int:
        """``commit_lanes`` as a number."""
        if self.commit_lanes == "auto":
            return 1 if self.is_sqlite else 4
        try:
            lanes = int(self.commit_lanes)
        except ValueError:
            lanes = -1
        if lanes < 0:
            raise SystemExit(f"ROOMLOG_COMMIT_LANES={self.commit_lanes!r}: a number of "
                             "lanes (0: one per room) or 'auto'")
        return lanes

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, help) for every setting."""
        return [
            ("ROOMLOG_" + f.name.upper(), repr(f.default), f.metadata["help"])
            for f in fields(cls)
        ]


def _convert(kind: Any, raw: str, name: str) -> Any:
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw.replace("_", ""))
        if kind == "float":
            return float(raw)
        return raw
    except ValueError:
        raise SystemExit(f"setting {name}: cannot read {raw!r} as {kind}") from None
