"""The ``roomlog`` command: ``serve | demo | migrate | token | settings``.

Each subcommand's help is written for the person at the terminal (``roomlog serve
--help``); every setting is also an environment variable (``roomlog settings``),
and a flag wins over its variable. Ctrl-C ends any command with one line and exit
status 130, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import logging.config
import re
import socket
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roomlog import __version__
from roomlog.identity import Role
from roomlog.logs import FORMATS, logging_config
from roomlog.settings import Settings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from roomlog.admission import Admission
    from roomlog.services import Services

__all__ = ["main"]

LEVELS = ("debug", "info", "warning", "error", "critical")
INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT

_DESCRIPTION = """\
roomlog: a real-time hub. Rooms are durable, gapless, sequenced logs in SQL
(SQLite by default, PostgreSQL in production), delivered over WebSocket,
long-polling and Server-Sent Events.

Every setting is an environment variable ROOMLOG_<NAME>; `roomlog settings`
lists them. A flag wins over its variable."""

_EPILOG = """\
examples:
  roomlog demo                           seeded rooms and four pages, ready to open
  roomlog serve                          the hub on http://127.0.0.1:8000 (./roomlog.db)
  roomlog serve --reload --log-level debug
  roomlog token --user u1 --role guest   a token for the hub of this directory
  roomlog migrate                        create or upgrade the schema (PostgreSQL)"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (paragraphs, examples); a wider help column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _text(description: str) -> str:
    """A subcommand's description, wrapped for a terminal."""
    return textwrap.fill(description, 78)


def _duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '7d' -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 1h, 7d)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def _check_database(settings: Settings) -> None:
    """Fail fast with the advice alone (not inside a lifespan traceback) when the
    database is unreachable or its schema is behind; migrates SQLite if enabled."""
    from roomlog.log.sql import SqlLog

    async def run() -> None:
        log = SqlLog(settings.database_url, migrate=settings.migrates_on_start)
        await log.open()
        await log.close()

    asyncio.run(run())


def _log_level(settings: Settings, args: argparse.Namespace) -> str:
    level = (getattr(args, "log_level", None) or settings.log_level).lower()
    if level not in LEVELS:
        raise SystemExit(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    return level


def _log_config(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    fmt = getattr(args, "log_format", None) or settings.log_format
    if fmt not in FORMATS:
        raise SystemExit(f"log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return logging_config(_log_level(settings, args), fmt)


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from roomlog.workers import check_workers, supervise

    workers = settings.workers if args.workers is None else args.workers
    check_workers(settings, workers, reload=args.reload)
    if workers == 1 or args.reuse_port:
        run_server(settings, args)
        return
    settings = settings.replace(workers=workers)
    _check_database(settings)
    flags = [f"--log-level={_log_level(settings, args)}"]
    if args.log_format:
        flags.append(f"--log-format={args.log_format}")
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    status = supervise(settings, workers, flags, host, port)
    if status:
        raise SystemExit(status)


def run_server(settings: Settings, args: argparse.Namespace, *,
               extra_routes: Sequence[BaseRoute] = (),
               on_ready: Callable[[str, int], None] | None = None) -> None:
    """Run the hub until SIGTERM (drained) or Ctrl-C. ``extra_routes`` and ``on_ready``
    (called with host and port once it listens) serve ``roomlog demo``."""
    import uvicorn

    from roomlog.app import build_services, create_app
    from roomlog.drain import drain
    from roomlog.transports.uvicorn_http import BoundedHttpProtocol
    from roomlog.workers import reuse_port_socket

    _check_database(settings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    log_config = _log_config(settings, args)
    if getattr(args, "reload", False):
        _serve_reloading(settings, host, port, args)
        return
    # A worker of `--workers N`: its own listening socket on the shared port.
    sockets = [reuse_port_socket(host, port)] if getattr(args, "reuse_port", False) else None
    services = build_services(settings)

    class DrainingServer(uvicorn.Server):
        """On SIGTERM: stop accepting, then drain (``roomlog.drain``) before
        uvicorn's own shutdown closes what is left."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if settings.gc_freeze or settings.gc_tuning:
                # Started: the modules, the app, the pools live as long as the process.
                # A full collection walked all of them (~100k objects: 50-170 ms, every
                # few seconds under load, the p99 of every delivery); frozen, it walks
                # only what came after.
                gc.freeze()
            if on_ready is not None and self.started:
                bound = [s.getsockname()[1] for server in self.servers for s in server.sockets]
                on_ready(host, bound[0] if bound else port)  # --port 0: the one it got

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            await drain(services, settings.drain_timeout)
            await super().shutdown(sockets)

    app = create_app(settings, services, extra_routes=extra_routes)
    config = uvicorn.Config(
        app,
        ws=_ws_protocol(settings, services, app.state.admission),
        http=BoundedHttpProtocol.configured(settings.max_header_bytes, settings.header_timeout),
        host=host,
        port=port,
        log_config=log_config,
        log_level=_log_level(settings, args),
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout)),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        lifespan="on",
    )
    # Long-lived connection state makes full collections frequent: collect the young
    # generation far less often (what startup made is frozen once it listens, above).
    if settings.gc_tuning:
        gc.set_threshold(100_000, 50, 100)
    DrainingServer(config).run(sockets=sockets)


def _ws_protocol(settings: Settings, services: Services, admission: Admission) -> type[Any]:
    """uvicorn's ``ws`` protocol class: the native one for ``/ws`` (``ws_engine``),
    which hands other paths to the ASGI one; the ASGI one alone when asked for, or
    for permessage-deflate, which only it speaks."""
    from roomlog.transports.native_ws import NativeWebSocket, WsEndpoint
    from roomlog.transports.uvicorn_ws import DirectSendProtocol

    if settings.ws_engine not in ("native", "asgi"):
        raise SystemExit(f"ws_engine {settings.ws_engine!r}: choose native or asgi")
    asgi = DirectSendProtocol.configured(settings.ws_close_timeout)
    if settings.ws_engine != "native" or settings.ws_compression:
        return asgi
    return NativeWebSocket.configured(WsEndpoint(services, admission, asgi,
                                                 close_timeout=settings.ws_close_timeout))


def _serve_reloading(settings: Settings, host: str, port: int,
                     args: argparse.Namespace) -> None:
    """Development: a worker process that restarts when a file of the package
    changes. Its app comes from the environment (``roomlog.app:app_from_env``)."""
    import uvicorn

    uvicorn.run("roomlog.app:app_from_env", factory=True, reload=True,
                reload_dirs=[str(Path(__file__).parent)], host=host, port=port,
                ws="roomlog.transports.uvicorn_ws:DirectSendProtocol",
                http="roomlog.transports.uvicorn_http:BoundedHttpProtocol",
                log_config=_log_config(settings, args), log_level=_log_level(settings, args),
                ws_max_size=settings.max_frame_bytes,
                ws_ping_interval=settings.ping_interval,
                ws_ping_timeout=settings.ping_timeout, proxy_headers=True,
                forwarded_allow_ips=settings.forwarded_allow_ips, lifespan="on")


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from roomlog.log.sql import SqlLog

    async def run() -> None:
        log = SqlLog(settings.database_url, migrate=True)
        await log.open()
        await log.close()

    asyncio.run(run())
    print(f"schema of {settings.database_url.split('@')[-1]} is up to date")


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from roomlog.auth import load_tokens, read_secret
    from roomlog.backends import read_backends

    keys = read_backends(settings.backends_file).keys
    secret = read_secret(settings.secret, settings.secret_file)
    tokens = load_tokens(settings.secret, settings.secret_file, settings.secret_roles, keys,
                         max_ttl=settings.token_max_ttl, found=secret)
    try:
        print(tokens.issue(args.user, Role(args.role), ttl=args.ttl, kid=args.kid))
    except ValueError as exc:
        raise SystemExit(f"roomlog token: {exc}") from None
    if secret.dev_file is None or args.kid is not None:
        return
    here = secret.dev_file.parent
    if secret.created:
        print(f"roomlog token: there was no development secret in {here}, so a new one was "
              f"made: {secret.dev_file}.\n  A server started in another directory has its "
              "own secret and refuses this token (\"Signature verification failed\").\n"
              "  Run `roomlog token` in the directory where `roomlog serve` runs, or give "
              "both the same ROOMLOG_SECRET.", file=sys.stderr)
    else:
        print(f"roomlog token: signed with the development secret in {secret.dev_file}; "
              f"only a server started in {here} (or with the same ROOMLOG_SECRET) accepts "
              "it.", file=sys.stderr)


def settings_table() -> str:
    """Every setting as a Markdown table: what ``roomlog settings`` prints, and the
    README's table (``python -m tools.settings_table`` rewrites it)."""
    rows = [f"| `{name}` | `{default}` | {help} |\n" for name, default, help in Settings.describe()]
    return "| variable | default | meaning |\n| --- | --- | --- |\n" + "".join(rows)


def _settings(settings: Settings, args: argparse.Namespace) -> None:
    print(settings_table(), end="")


def _demo(settings: Settings, args: argparse.Namespace) -> None:
    from roomlog.demo import prepare

    plan = prepare(settings, args)
    run_server(plan.settings, args, extra_routes=plan.routes, on_ready=plan.announce)


def _server_flags(parser: argparse.ArgumentParser, *, reload: bool) -> None:
    parser.add_argument("--host", metavar="ADDR",
                        help="address to bind (default: ROOMLOG_HOST, 127.0.0.1; 0.0.0.0 for "
                             "every interface)")
    parser.add_argument("--port", type=int, metavar="N",
                        help="port to bind (default: ROOMLOG_PORT, else $PORT, else 8000)"
                             + ("" if reload else "; 0: any free port"))
    if reload:
        parser.add_argument("--reload", action="store_true",
                            help="development: restart when a file of the roomlog package "
                                 "changes (one worker, no drain on restart)")
    parser.add_argument("--log-level", choices=LEVELS, type=str.lower,
                        help="least severe level logged (default: ROOMLOG_LOG_LEVEL, info)")
    parser.add_argument("--log-format", choices=FORMATS,
                        help="'text' lines, or 'json': one object per line with request_id "
                             "and conn, for the app and uvicorn alike (default: "
                             "ROOMLOG_LOG_FORMAT, text)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomlog", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"roomlog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the hub", formatter_class=_Formatter,
        description=_text(
            "Run the hub (uvicorn) until SIGTERM or Ctrl-C. SQLite databases are "
            "created and migrated at start; PostgreSQL must be migrated first "
            "(`roomlog migrate`). SIGTERM drains: writes in flight are committed and "
            "acknowledged, clients are told to reconnect elsewhere, within "
            "ROOMLOG_DRAIN_TIMEOUT."))
    _server_flags(serve, reload=True)
    serve.add_argument("--workers", type=int, metavar="N",
                       help="server processes on the one port, one per core (default: "
                            "ROOMLOG_WORKERS, 1); more than one needs PostgreSQL and shares "
                            "a bus (ROOMLOG_BUS)")
    serve.add_argument("--reuse-port", action="store_true",
                       help="bind with SO_REUSEPORT, so that several processes share the "
                            "port (what each worker of --workers does; the kernel spreads "
                            "connections over them)")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="seed a queue room and a repair ticket, serve them, print page links",
        formatter_class=_Formatter,
        description=_text(
            "Start a demo hub on SQLite in its own directory: a DJ's queue room "
            "(queue:demo) with a few song requests, and a repair ticket (t-100) with "
            "a technician assigned and a quote waiting for the customer. Prints "
            "ready-to-open links to the guest, DJ, customer and technician pages, "
            "with long-lived demo tokens. Run it again to continue where you left off "
            "(--fresh starts over)."))
    demo.add_argument("--dir", default="roomlog-demo", metavar="PATH",
                      help="where the demo keeps its database, secret and photos "
                           "(default: ./roomlog-demo)")
    demo.add_argument("--fresh", action="store_true",
                      help="delete the demo's database and photos first, and seed anew")
    demo.add_argument("--ttl", type=_duration, default=30 * 86400.0, metavar="DURATION",
                      help="lifetime of the printed tokens, e.g. 12h or 7d (default: 30d)")
    _server_flags(demo, reload=False)
    demo.set_defaults(run=_demo)

    migrate = commands.add_parser(
        "migrate", help="create or upgrade the database schema", formatter_class=_Formatter,
        description=_text(
            "Create or upgrade the schema of ROOMLOG_DATABASE_URL. Run it before "
            "starting a new version on PostgreSQL (the Procfile's release phase)."))
    migrate.set_defaults(run=_migrate)

    token = commands.add_parser(
        "token", help="print a signed token for a user and role", formatter_class=_Formatter,
        description=_text(
            "Print a token (an HS256 JWT) signed with ROOMLOG_SECRET, or without it "
            "with the development secret of the current directory (.roomlog-secret, "
            "made if missing): run it where the server runs. The token goes to stdout "
            "alone, notes to stderr: TOKEN=$(roomlog token --user u1) works."))
    token.add_argument("--user", required=True, metavar="ID",
                       help="the user id the token names (its 'sub')")
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.GUEST.value,
                       help="what the user may do (default: guest); see docs/protocol.md, "
                            "'Rooms and permissions'")
    token.add_argument("--ttl", type=_duration, default=3600.0, metavar="DURATION",
                       help="lifetime, e.g. 90s, 15m, 1h, 7d (default: 1h)")
    token.add_argument("--kid", metavar="KID",
                       help="sign with this HS256 key of the backends file "
                            "(default: ROOMLOG_SECRET or the development secret, no kid)")
    token.set_defaults(run=_token)

    commands.add_parser(
        "settings", help="print every setting as a Markdown table", formatter_class=_Formatter,
        description=_text(
            "Print every ROOMLOG_* variable with its default and meaning (the "
            "README's configuration table).")).set_defaults(run=_settings)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    logging.config.dictConfig(_log_config(settings, args))
    try:
        args.run(settings, args)
    except KeyboardInterrupt:
        logging.shutdown()
        print(f"roomlog: interrupted, {args.command} stopped", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


if __name__ == "__main__":
    main(sys.argv[1:])
