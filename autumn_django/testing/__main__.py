"""Run a stand-in Autumn API in the foreground.

    python -m autumn_django.testing serve --customers 3000 --seed 1 --port 8787
    python -m autumn_django.testing serve --customers 3000 --control  # + /_standin/* routes
    python -m autumn_django.testing serve --customers 3000 --entities  # + make_entities
    python -m autumn_django.testing serve --customers 3000 --skew --latency-ms 250

Prints one line once it listens (scripts wait for it), then serves until SIGINT or SIGTERM
and exits 0. ``--control`` opens the key-less control channel (``control.py``) that lets a
harness in another process change balances and subscriptions; off by default.
Balance resets are lazy as on Autumn (``--no-lazy-resets`` applies them on list too;
``--reset-lands-after-ms never`` keeps a list's queued reset from ever landing).
``--skew`` bunches the customers' ``created_at`` (``skew.py``: a launch day, an import
hour) before entities are made; ``--latency-ms N`` makes every API request wait N ms in its
own handler thread, so concurrent requests wait side by side, as they do across a network.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .data import make_customers
from .entity_data import make_entities
from .server import ENVS, AutumnStandIn
from .skew import skew_created_at

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    serve.add_argument(
        "--lazy-resets", action=argparse.BooleanOptionalAction, default=True,
        help="customers.list answers due balance resets unapplied, as Autumn does (default on)",
    )  # fmt: skip
    serve.add_argument(
        "--reset-lands-after-ms", type=_lands_after, default=1000, metavar="MS|never",
        help="when a reset queued by customers.list lands (default 1000 ms)",
    )  # fmt: skip
    serve.add_argument(
        "--control", action="store_true", help="also serve the /_standin/* control routes "
        "(no key needed: only for a host no one else can reach)",
    )  # fmt: skip
    serve.add_argument(
        "--entities", action="store_true", help="also serve entities for about 10%% of the "
        "customers (make_entities, same seed); off by default",
    )  # fmt: skip
    serve.add_argument(
        "--skew", action="store_true", help="bunch created_at: 30%% of the customers on one "
        "launch day, 20%% in one import hour (skew.py); off by default",
    )  # fmt: skip
    serve.add_argument(
        "--latency-ms", type=_latency, default=0.0, metavar="MS",
        help="add MS milliseconds to every API request (not the control channel); default 0",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.control and args.host not in LOOPBACK:
        print(f"warning: --control on {args.host}: anyone who reaches it can change customers "
              "without a key", file=sys.stderr, flush=True)  # fmt: skip

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    customers = make_customers(args.customers, seed=args.seed, env=args.env)
    if args.skew:  # before the entities: an entity is never older than its customer
        customers = skew_created_at(customers, seed=args.seed)
    entities = make_entities(customers, seed=args.seed) if args.entities else None
    server = AutumnStandIn(
        customers=customers, entities=entities,
        env=args.env, secret_keys=args.key, org_max_limit=args.org_max_limit,
        port=args.port, host=args.host, list_rate_limit=args.list_rate_limit,
        control=args.control, lazy_resets=args.lazy_resets,
        reset_lands_after_ms=args.reset_lands_after_ms,
    )  # fmt: skip
    if args.latency_ms:
        # The delay sleeps in the request's own handler thread with no lock held
        # (server.py, _respond), so requests in flight together wait together.
        server.faults.delay(args.latency_ms / 1000)
    server.start()
    extra = f", {len(entities)} entities" if entities is not None else ""
    extra += ", skewed created_at" if args.skew else ""
    extra += f", {args.latency_ms:g} ms latency" if args.latency_ms else ""
    extra += ", control channel on /_standin/" if args.control else ""
    print(
        f"Autumn stand-in listening on {server.url} ({args.customers} customers, {args.env}{extra})",
        flush=True,
    )
    try:
        while not stop.wait(0.2):  # a timed wait lets the signal handlers run promptly
            pass
    finally:
        server.stop()
    return 0


def _lands_after(text: str) -> float | None:
    if text == "never":
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a number of milliseconds >= 0, or 'never'")
    return value


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of milliseconds >= 0, not {text!r}") from None
    if not 0 <= value < 3_600_000:
        raise argparse.ArgumentTypeError(f"a number of milliseconds >= 0 (and below an hour), not {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
