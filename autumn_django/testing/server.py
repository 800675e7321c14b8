"""``AutumnStandIn``: a real HTTP server on 127.0.0.1 that behaves like Autumn's customer API.

It speaks HTTP/1.1 with keep-alive (the app's client pools connections, and benchmarks
would otherwise measure TCP handshakes), serves each connection in a daemon thread, and
logs nothing per request. See ``endpoints.py`` for the API behaviour and ``faults.py`` for
the failure switches.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import control as control_channel
from .catalogue import make_catalogue
from .endpoints import HANDLERS, ApiError, Ctx, Reply, error_reply
from .entities import EntityStore
from .entity_access import EntityAccess
from .entity_endpoints import Catalogue
from .fault_replies import LIST_BUCKET, fault_reply, text_429
from .faults import Faults
from .resets import make_due
from .store import Store, dumps, now_ms

ENVS = ("sandbox", "live")
API_VERSIONS = ("2.1", "2.2", "2.3")
KEY_RE = re.compile(r"^am_sk_(test|live)_[A-Za-z0-9_]{8,}$")
PATH_RE = re.compile(r"^/v1/([a-z_]+\.[a-z_]+)/?$")


def _mask(key: str) -> str:
    """Partly masked key as the real server echoes it: ``am_sk_te...1234``."""
    return f"{key[:8]}...{key[-4:]}" if len(key) > 12 else "***"


def _check_env(env: str) -> str:
    if env not in ENVS:
        raise ValueError(f"env must be one of {ENVS}, not {env!r}")
    return env


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in a delay fault
    request_queue_size = 128
    allow_reuse_address = True
    standin: AutumnStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every reply has a Content-Length
    server_version = "AutumnStandIn/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACKs
        # add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no request lines
        pass

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(Reply(400, b"Bad Content-Length", "text/plain; charset=utf-8"))
            return
        raw = self.rfile.read(length) if length else b""
        reply = self.server.standin._respond(self.command, self.path, self.headers, raw)
        if reply is None:  # drop fault: close without a byte of response
            self.close_connection = True
            return
        self._send(reply)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.cut:
                self.close_connection = True
                self.wfile.write(reply.body[:len(reply.body) // 2])
                return
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (e.g. its timeout fired during a delay)
            self.close_connection = True


class AutumnStandIn(EntityAccess):
    """An Autumn customer API on ``127.0.0.1`` for tests, demos and benchmarks.

    ``customers`` seed the ``env`` store (the other env starts empty). ``secret_keys=None``
    accepts any well-formed ``am_sk_test_``/``am_sk_live_`` key; otherwise only those keys.
    The env of a request is decided by its key's prefix alone, as on the real server.
    Seed objects are shallow-copied, not deep-copied (100k customers would take seconds):
    do not mutate their nested values afterwards.

    ``control=True`` also serves the ``/_standin/*`` control routes (see ``control.py``),
    so a harness in another process can change customers the way billing does; off, those
    paths are unknown like any other (404).

    Balance resets are lazy, as on the real server (``resets.py``): ``customers.get`` and
    ``get_or_create`` apply a customer's due resets before answering, ``customers.list``
    answers as stored and queues a background reset that lands ``reset_lands_after_ms``
    later (None: never). ``lazy_resets=False`` makes the list apply them too. Both are
    attributes, so a test can switch them while the server runs.

    ``entities`` seed the ``env`` entity store (each names a seeded customer; see
    ``entities.py``); ``features`` and ``plans`` are what features.list and plans.list
    answer in ``env`` (default: ``make_catalogue``, the other env always gets its default).
    ``list_rate_limit`` is one bucket for customers.list and entities.list together.
    """

    def __init__(
        self,
        customers: Iterable[dict] | None = None,
        env: str = "sandbox",
        secret_keys: Iterable[str] | None = None,
        org_max_limit: int = 1000,
        port: int = 0,
        host: str = "127.0.0.1",
        list_rate_limit: int | None = None,
        control: bool = False,
        lazy_resets: bool = True,
        reset_lands_after_ms: float | None = 1000,
        entities: Iterable[dict] | None = None,
        features: list[dict] | None = None,
        plans: list[dict] | None = None,
    ) -> None:
        self.env = _check_env(env)
        if isinstance(secret_keys, str):
            secret_keys = [secret_keys]
        self.secret_keys = None if secret_keys is None else frozenset(secret_keys)
        self.org_max_limit = org_max_limit
        self.host = host
        self.port = port
        self.list_rate_limit = list_rate_limit
        self.control = control
        self.lazy_resets = lazy_resets
        self.reset_lands_after_ms = reset_lands_after_ms
        self.faults = Faults()
        self._stores = {e: Store(e) for e in ENVS}
        if customers is not None:
            self._stores[env].seed(customers)
        self._entities = {e: EntityStore(self._stores[e]) for e in ENVS}
        if entities is not None:
            self._entities[env].seed(list(entities))
        self._catalogues = {e: Catalogue(*make_catalogue(e)) for e in ENVS}
        if features is not None:
            self._catalogues[env].set("features", features)
        if plans is not None:
            self._catalogues[env].set("plans", plans)
        self._lock = threading.Lock()
        self._requests: list[tuple[str, dict]] = []
        self._hits: dict[str, collections.deque] = {e: collections.deque() for e in ENVS}
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> AutumnStandIn:
        """Bind and serve in a daemon thread. After a stop, restarts on the same port."""
        if self._httpd is not None:
            raise RuntimeError("the stand-in is already running")
        httpd = _Server((self.host, self.port), _Handler)
        httpd.standin = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"autumn-standin-{self.port}", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections, so clients see it is gone."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AutumnStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the stand-in is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = self.url if self._httpd else "stopped"
        return (
            f"<AutumnStandIn {state} sandbox={len(self._stores['sandbox'])} live={len(self._stores['live'])}>"
        )

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- data access for tests (deep copies; full objects as stored: customers.get
    # answers the same but for resets that are due, which it applies first) ------------
    def _store(self, env: str) -> Store:
        store = self._stores[_check_env(env)]
        store.land_resets()  # what the queued background resets changed by now
        return store

    def list_customers(self, env: str = "sandbox") -> list[dict]:
        """Every customer of ``env`` in ascending ``(created_at, insertion)`` order."""
        return [copy.deepcopy(r.data) for r in self._store(env).records()]

    def get_customer(self, customer_id: str, env: str = "sandbox") -> dict | None:
        rec = self._store(env).find(customer_id)
        return None if rec is None else copy.deepcopy(rec.data)

    def add_customer(self, customer: dict, env: str = "sandbox") -> dict:
        """Store a customer (``created_at`` kept if given, else now); returns it as stored."""
        return copy.deepcopy(self._store(env).add(copy.deepcopy(customer)).data)

    def modify_customer(self, customer_id: str, env: str = "sandbox", **fields: Any) -> dict:
        """Replace top-level fields (``name=...``, ``balances=...``); returns the result."""
        store = self._store(env)
        with store.lock:
            rec = store.find(customer_id)
            if rec is None:
                raise KeyError(customer_id)
            store.replace(rec, {**rec.data, **copy.deepcopy(fields)})
            return copy.deepcopy(rec.data)

    def make_reset_due(self, customer_id: str, feature_id: str | None = None, env: str = "sandbox",
                       at: int | None = None) -> dict:
        """Make the customer's resetting balances (or ``feature_id``'s) due to reset at
        ``at`` (epoch ms, default 1 ms ago), usage left as it is; returns it as stored. The
        list then shows the due reset until its queued reset lands; get applies it."""
        store = self._store(env)
        with store.lock:
            rec = store.find(customer_id)
            if rec is None:
                raise KeyError(customer_id)
            store.replace(rec, make_due(rec.data, now_ms() - 1 if at is None else at, feature_id))
            return copy.deepcopy(rec.data)

    def rename_customer(self, old_id: str, new_id: str | None, env: str = "sandbox") -> dict:
        return self.modify_customer(old_id, env, id=new_id)

    def delete_customer(self, customer_id: str, env: str = "sandbox") -> None:
        store = self._store(env)
        with store.lock:
            rec = store.find(customer_id)
            if rec is None:
                raise KeyError(customer_id)
            store.remove(rec)

    def lag_list(self, milliseconds: float, env: str | None = None) -> None:
        """From now on customers.list (of ``env``, default both) reads a copy of the store
        that shows every change ``milliseconds`` late: updates, creations, renames and
        deletions, whether made through the API, the helpers above or the control channel,
        as Autumn's list reads a replica that lags its primary. customers.get and the
        helpers above see the store itself. 0 ends the lag."""
        for name in (_check_env(env),) if env is not None else ENVS:
            self._stores[name].set_list_lag(milliseconds)

    @property
    def requests(self) -> list[tuple[str, dict]]:
        """``(endpoint, body)`` of every API request received, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- request handling -----------------------------------------------------------
    def _respond(self, method: str, path: str, headers: Any, raw: bytes) -> Reply | None:
        if self.control:  # before auth, faults and recording: it is not the API
            route = control_channel.route_for(method, path)
            if route is not None:
                return control_channel.respond(self, route, method, path, raw)
        auth = (headers.get("Authorization") or "").strip()
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else auth
        env = "live" if key.startswith("am_sk_live_") else "sandbox"
        m = PATH_RE.match(path.split("?", 1)[0])
        endpoint = m.group(1) if m else None
        if method != "POST" or endpoint not in HANDLERS:
            return error_reply(404, "not_found", f"Cannot {method} {path}", env)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        with self._lock:
            self._requests.append((endpoint, body if isinstance(body, dict) else {}))
        delay = self.faults.delay_for(endpoint)
        if delay:
            time.sleep(delay)
        fault = self.faults.take(endpoint)
        if fault is not None:
            return fault_reply(fault, endpoint, env)
        if not key:
            return error_reply(401, "no_secret_key", "Secret key not found", env)
        ok = KEY_RE.match(key) if self.secret_keys is None else key in self.secret_keys
        if not ok:
            return error_reply(401, "invalid_secret_key", f"Invalid secret key: {_mask(key)}", env)
        version = (headers.get("x-api-version") or "2.3").strip()
        if version not in API_VERSIONS:
            return error_reply(400, "invalid_api_version", f"Invalid API version: {version[:20]}", env)
        if not isinstance(body, dict):
            problem = "Invalid JSON" if body is None else "Expected object"
            return error_reply(400, "invalid_inputs", f"body: {problem}", env)
        if endpoint in LIST_BUCKET and self.list_rate_limit and self._limited(env):
            return text_429(endpoint, 1)
        store = self._stores[env]
        store.land_resets()
        ctx = Ctx(store, env, version, self.org_max_limit, self.faults.patches(env),
                  self.lazy_resets, self.reset_lands_after_ms, self._entities[env], self._catalogues[env],
                  self.faults.entity_patches(env))
        try:
            return self._cached(endpoint, env, HANDLERS[endpoint](ctx, body))
        except ApiError as e:
            return error_reply(e.status, e.code, e.message, env)
        except Exception:  # a stand-in bug: answer like the real server, but say why
            traceback.print_exc(file=sys.stderr)
            return error_reply(500, "internal_error", "Internal server error", env)

    def _cached(self, endpoint: str, env: str, reply: Reply) -> Reply:
        """customers.get's answer as Autumn's per-customer cache gives it
        (``faults.stale_get_cache``)."""
        if endpoint != "customers.get" or reply.status != 200:
            return reply
        customer = json.loads(reply.body)
        cached = self.faults.through_get_cache(env, customer)
        return reply if cached is customer else Reply(200, dumps(cached), reply.content_type, reply.headers)

    def _limited(self, env: str) -> bool:
        """Sliding one-second window of customers.list and entities.list calls per env."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[env]
            while hits and now - hits[0] >= 1.0:
                hits.popleft()
            if len(hits) >= self.list_rate_limit:
                return True
            hits.append(now)
            return False
