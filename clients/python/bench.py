#!/usr/bin/env python3
"""A small throughput benchmark of the Python client, shaped like ``sluice bench queue``.

One publisher connection publishes N messages of --size bytes with up to
--window unconfirmed (a pipeline), while one consumer connection, subscribed
with --prefetch, receives them and acks each one (pipelined ACKs: it does not
wait for each OK). It prints confirmed publishes/s, deliveries/s and acks/s,
each counted from the start of publishing.

    python3 bench.py --server 127.0.0.1:5680 --count 100000
    python3 bench.py --async            # the same with AsyncClient

Start a broker first (``sluice serve``). The queue is declared for the run
(non-durable unless --persistent) and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sluice import AsyncClient, Client  # noqa: E402


def report(args: argparse.Namespace, kind: str, published: float, delivered: float, acked: float) -> None:
    n = args.count
    print(f"python {kind} client ({args.server})")
    print(f"  {n:,} msgs x {args.size} B, {'persistent' if args.persistent else 'transient'}, "
          f"1 publisher (window {args.window}), 1 consumer (prefetch {args.prefetch}, ack {args.ack})")
    for what, t in (("published", published), ("delivered", delivered), ("acked", acked)):
        print(f"  {what:<10} {n:>9,} msgs in {t:6.2f} s  {n / t:>10,.0f} msgs/s"
              + ("  (confirmed)" if what == "published" else ""))


def run_sync(args: argparse.Namespace) -> None:
    queue = "pybench-%d-%x" % (os.getpid(), int(time.time() * 1000) & 0xFFFFFF)
    body = (b"x" * args.size)[: args.size]
    pub = Client(args.server, timeout=60)
    con = Client(args.server, timeout=60)
    try:
        pub.declare_queue(queue, durable=args.persistent)
        sub = con.subscribe(queue, prefetch=args.prefetch, auto_ack=args.ack == "auto")
        done = {}
        start = time.perf_counter()

        def consume() -> None:
            n = 0
            for m in sub:
                if args.ack == "manual":
                    m.ack(wait=False)
                n += 1
                if n == args.count:
                    break
            done["delivered"] = time.perf_counter() - start
            con.ping()  # every ACK before it is answered
            done["acked"] = time.perf_counter() - start

        t = threading.Thread(target=consume)
        t.start()
        with pub.pipeline(window=args.window) as pipe:
            for _ in range(args.count):
                pipe.publish("", queue, body)
        published = time.perf_counter() - start
        failed = [r for r in pipe.results if not hasattr(r, "routed")]
        if failed:
            raise SystemExit(f"{len(failed)} publishes failed: {failed[0]}")
        t.join()
        report(args, "blocking", published, done["delivered"], done["acked"])
    finally:
        try:
            pub.delete_queue(queue)
        finally:
            pub.close()
            con.close()


async def run_async(args: argparse.Namespace) -> None:
    queue = "pybench-%d-%x" % (os.getpid(), int(time.time() * 1000) & 0xFFFFFF)
    body = (b"x" * args.size)[: args.size]
    pub = await AsyncClient(args.server, timeout=60).connect()
    con = await AsyncClient(args.server, timeout=60).connect()
    try:
        await pub.declare_queue(queue, durable=args.persistent)
        sub = await con.subscribe(queue, prefetch=args.prefetch, auto_ack=args.ack == "auto")
        start = time.perf_counter()
        done = {}

        async def consume() -> None:
            n = 0
            async for m in sub:
                if args.ack == "manual":
                    await m.ack(wait=False)
                n += 1
                if n == args.count:
                    break
            done["delivered"] = time.perf_counter() - start
            await con.ping()
            done["acked"] = time.perf_counter() - start

        task = asyncio.get_running_loop().create_task(consume())
        async with pub.pipeline(window=args.window) as pipe:
            for _ in range(args.count):
                await pipe.publish("", queue, body)
        published = time.perf_counter() - start
        failed = [r for r in pipe.results if not hasattr(r, "routed")]
        if failed:
            raise SystemExit(f"{len(failed)} publishes failed: {failed[0]}")
        await task
        report(args, "asyncio", published, done["delivered"], done["acked"])
    finally:
        try:
            await pub.delete_queue(queue)
        finally:
            await pub.close()
            await con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--server", default=os.environ.get("SLUICE_SERVER")
                    or os.environ.get("SLUICE_ADDR") or "127.0.0.1:5680")
    ap.add_argument("-n", "--count", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--window", type=int, default=1000, help="unconfirmed publishes in flight")
    ap.add_argument("--prefetch", type=int, default=100)
    ap.add_argument("--ack", choices=("manual", "auto"), default="manual")
    ap.add_argument("--persistent", action="store_true", help="a durable queue, persistent messages")
    ap.add_argument("--async", dest="use_async", action="store_true", help="use AsyncClient")
    args = ap.parse_args()
    if args.use_async:
        asyncio.run(run_async(args))
    else:
        run_sync(args)


if __name__ == "__main__":
    main()
