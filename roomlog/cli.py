"""``roomlog serve | migrate | token | settings``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import socket
import sys

from roomlog.identity import Role
from roomlog.settings import Settings

__all__ = ["main"]


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


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from roomlog.app import build_services, create_app
    from roomlog.drain import drain
    from roomlog.transports.uvicorn_ws import DirectSendProtocol

    _check_database(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    services = build_services(settings)

    class DrainingServer(uvicorn.Server):
        """On SIGTERM: stop accepting, then drain (``roomlog.drain``) before
        uvicorn's own shutdown closes what is left."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            await drain(services, settings.drain_timeout)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        create_app(settings, services),
        ws=DirectSendProtocol,
        host=host,
        port=port,
        log_level=settings.log_level,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout)),
        proxy_headers=True,
        lifespan="on",
    )
    # Long-lived connection state makes full collections frequent and slow (measured:
    # gen-2 pauses of ~200 ms with 1000 subscribers). Freeze what startup made and
    # collect the young generation far less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    DrainingServer(config).run()


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from roomlog.log.sql import SqlLog

    async def run() -> None:
        log = SqlLog(settings.database_url, migrate=True)
        await log.open()
        await log.close()

    asyncio.run(run())
    print(f"schema of {settings.database_url.split('@')[-1]} is up to date")


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from roomlog.auth import load_tokens
    from roomlog.backends import read_backends

    keys = read_backends(settings.backends_file).keys
    tokens = load_tokens(settings.secret, settings.secret_file, settings.secret_roles, keys)
    try:
        print(tokens.issue(args.user, Role(args.role), ttl=args.ttl, kid=args.kid))
    except ValueError as exc:
        raise SystemExit(f"roomlog token: {exc}") from None


def _settings(settings: Settings, args: argparse.Namespace) -> None:
    print("| variable | default | meaning |\n| --- | --- | --- |")
    for name, default, help in Settings.describe():
        print(f"| `{name}` | `{default}` | {help} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="roomlog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the hub (uvicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=_serve)
    commands.add_parser("migrate", help="create or upgrade the schema").set_defaults(run=_migrate)
    token = commands.add_parser("token", help="print a signed token")
    token.add_argument("--user", required=True)
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.GUEST.value)
    token.add_argument("--ttl", type=_duration, default=3600.0, help="e.g. 15m, 1h, 7d")
    token.add_argument("--kid", help="sign with this HS256 key of the backends file "
                                     "(default: ROOMLOG_SECRET, no kid)")
    token.set_defaults(run=_token)
    commands.add_parser("settings", help="print every setting as a table").set_defaults(
        run=_settings)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start INFO is noise
    args.run(settings, args)


if __name__ == "__main__":
    main(sys.argv[1:])
