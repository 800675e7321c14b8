"""Run a stand-in Autumn API in the foreground.

    python -m autumn_django.testing serve --customers 3000 --seed 1 --port 8787

Prints one line once it listens (scripts wait for it), then serves until SIGINT or SIGTERM
and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .data import make_customers
from .server import ENVS, AutumnStandIn


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autumn_django.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a stand-in Autumn API until interrupted")
    serve.add_argument("--customers", type=int, default=3000, help="customers to generate")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--env", choices=ENVS, default="sandbox", help="env the customers seed")
    serve.add_argument(
        "--key", action="append", help="accept only this secret key (repeatable); "
        "default: any well-formed am_sk_test_/am_sk_live_ key",
    )  # fmt: skip
    serve.add_argument("--org-max-limit", type=int, default=1000)
    serve.add_argument("--list-rate-limit", type=int, default=None, help="customers.list req/s")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = AutumnStandIn(
        customers=make_customers(args.customers, seed=args.seed, env=args.env),
        env=args.env, secret_keys=args.key, org_max_limit=args.org_max_limit,
        port=args.port, host=args.host, list_rate_limit=args.list_rate_limit,
    )  # fmt: skip
    server.start()
    print(
        f"Autumn stand-in listening on {server.url} ({args.customers} customers, {args.env})",
        flush=True,
    )
    try:
        while not stop.wait(0.2):  # a timed wait lets the signal handlers run promptly
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
