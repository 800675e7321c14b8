"""The benchmark's database: Django settings, a fresh empty mirror, its row counts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from benchmarks.common import REPO_ROOT, say


def configure(db: str) -> None:
    """Point Django at the benchmark settings for ``db`` (before django.setup())."""
    if str(REPO_ROOT) not in sys.path:  # run as a file, not with -m
        sys.path.insert(0, str(REPO_ROOT))
    os.environ["AUTUMN_BENCH_DB"] = db
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"


def setup_django() -> None:
    import django

    django.setup()


def fresh_database(db: str) -> None:
    """Drop and recreate the benchmark database, then migrate it: an empty mirror."""
    from django.core.management import call_command
    from django.db import connections

    from benchmarks import settings as bench

    started = time.perf_counter()
    connections.close_all()  # Django reconnects lazily to the new database
    if db == "sqlite":
        bench.SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{bench.SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        where = str(bench.SQLITE_PATH)
    else:
        _recreate_postgres_database(bench.POSTGRES_NAME)
        where = f"{bench.POSTGRES_NAME} on {os.environ.get('PGHOST')}:{os.environ.get('PGPORT')}"
    call_command("migrate", verbosity=0)
    say(f"database: fresh {db} ({where}), migrated in {time.perf_counter() - started:.1f} s")


def check_migrations() -> None:
    """Stop early if the models' tables differ from what the migrations build (a tree
    caught mid-edit): the sync would otherwise fail minutes into the run on a missing
    column. Changes that touch no table (Meta options such as permissions) are fine."""
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations import AlterModelManagers, AlterModelOptions
    from django.db.migrations.state import ProjectState

    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(
        graph=loader.graph)
    schema = [op.describe() for migrations in changes.values() for migration in migrations
              for op in migration.operations if not isinstance(op, (AlterModelOptions, AlterModelManagers))]
    if schema:
        raise RuntimeError("the models have changes that no migration covers "
                           f"({'; '.join(schema)}); run the benchmark on a consistent tree")


def _recreate_postgres_database(name: str) -> None:
    """Through psycopg against the ``postgres`` database (the PG* variables say where)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname="postgres", autocommit=True) as conn:
        # FORCE: a connection a crashed earlier run left behind must not block the drop.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def mirror_rows() -> dict[str, int]:
    from autumn_django.models import Balance, Customer, Entity, Flag, License, Purchase, Subscription

    counts = {model.__name__.lower(): model.objects.count()
              for model in (Customer, Entity, License, Subscription, Purchase, Balance, Flag)}
    counts["total"] = sum(counts.values())
    return counts
