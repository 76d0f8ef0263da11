"""The fan-out's own cost: Python time per delivery, in one process, no sockets.

``--subscribers`` subscriptions of one room, each with an outbox whose direct
send takes everything (a socket that is always writable, without the system
call), get ``--messages`` messages one at a time through ``Hub.deliver`` and
the end-of-turn flush. It prints CPU per delivery for both ways the hub writes:

* ``at once`` (``Hub(write_at_once=True)``, an instance without a bus to
  others): idle subscribers are written during the delivery (``Outbox.offer``);
* ``end of turn`` (``write_at_once=False``, with Redis): every outbox queues the
  frames and one callback at the end of the loop turn writes them.

What a real socket write costs (the system call, loopback TCP) comes on top and
is the same for both; ``loadtest/fanout.py`` measures the whole. Run it from the
tree whose code you measure. Example: ``python loadtest/deliver.py --json -``.
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``, which
# asyncio's thread pool imports: put this folder after the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import inspect
import json
import time
from typing import Any

from roomlog.hub import Hub, Subscription
from roomlog.log import Log
from roomlog.outbox import Flusher, Outbox
from roomlog.protocol import Format, Message

ROOM = "chat:deliver"


async def measure(subscribers: int, messages: int, at_once: bool) -> dict[str, Any]:
    options = {"write_at_once": at_once}
    if "write_at_once" not in inspect.signature(Hub).parameters:  # a tree before issue 13
        if at_once:
            return {}
        options = {}
    hub = Hub(Log.__new__(Log), **options)  # type: ignore[type-abstract]  # never read
    flusher = Flusher()
    written = [0]

    def direct(payload: bytes) -> bool:
        written[0] += 1
        return True

    for _ in range(subscribers):
        outbox = Outbox(Format.JSON, max_frames=1000, max_bytes=10**7, coalesce=64,
                        on_overflow=lambda: None, direct=direct, flusher=flusher)
        sub = Subscription(ROOM, outbox, None, epoch="e", live=True)
        hub._room(ROOM).subs.add(sub)
    payload = b'{"text":"' + b"x" * 64 + b'"}'
    cpu = time.process_time()
    for seq in range(1, messages + 1):
        hub.deliver(ROOM, [Message(ROOM, seq, "e", 1, "u", payload)])
        await asyncio.sleep(0)  # the end of the loop turn: the flush
    cpu = time.process_time() - cpu
    assert written[0] == subscribers * messages, written
    return {"mode": "at once" if at_once else "end of turn", "subscribers": subscribers,
            "messages": messages, "us_per_delivery": round(cpu / messages / subscribers * 1e6,
                                                           3)}


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for _ in range(args.repeat):
        for at_once in (True, False):
            result = await measure(args.subscribers, args.messages, at_once)
            if result:
                results.append(result)
                if args.json is None:
                    print(f"{result['mode']:<12} {result['us_per_delivery']:.3f} us CPU per "
                          f"delivery ({args.subscribers} subscribers, {args.messages} messages)",
                          flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode (default 3)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout)")
    options = parser.parse_args()
    rows = asyncio.run(main(options))
    if options.json:
        text = json.dumps(rows, indent=2)
        if options.json == "-":
            print(text)
        else:
            with open(options.json, "w") as f:
                f.write(text + "\n")
