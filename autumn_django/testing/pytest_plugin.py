"""pytest plugin: an ``autumn_standin`` fixture that points the app at a local stand-in.

Enable it with ``pytest_plugins = ["autumn_django.testing.pytest_plugin"]``. Each test
using the fixture gets its own server (seeded with ``make_customers(25, seed=0)``) and
Django settings ``AUTUMN_API_URL`` / ``AUTUMN_SECRET_KEY`` pointing at it. Tune per test:

    @pytest.mark.autumn_standin(customers=500, seed=3, org_max_limit=100)
    def test_sync(autumn_standin): ...

``entities=True`` also seeds ``make_entities(customers, seed)`` (or pass a list of
entities); the default is none, so tests that do not ask see no entities. Other marker
keywords (``env``, ``secret_keys``, ``list_rate_limit``, ``features``, ``plans``) are passed
through to :class:`AutumnStandIn`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .data import make_customers
from .entity_data import make_entities
from .server import AutumnStandIn

FIXTURE_SECRET_KEY = "am_sk_test_standin_fixture_key"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "autumn_standin(customers=25, seed=0, org_max_limit=1000, entities=False, **kwargs): "
        "configure the autumn_standin fixture's server",
    )


@pytest.fixture
def autumn_standin(request: pytest.FixtureRequest) -> Iterator[AutumnStandIn]:
    """A running :class:`AutumnStandIn`; Django settings point at it while the test runs."""
    marker = request.node.get_closest_marker("autumn_standin")
    options = dict(marker.kwargs) if marker else {}
    n = options.pop("customers", 25)
    seed = options.pop("seed", 0)
    env = options.get("env", "sandbox")
    entities = options.pop("entities", False)
    customers = make_customers(n, seed=seed, env=env)
    if entities is True:
        entities = make_entities(customers, seed=seed)
    server = AutumnStandIn(customers=customers, entities=entities or None, **options)
    server.start()
    override = None
    try:
        from django.conf import settings
        from django.test import override_settings

        if settings.configured:
            override = override_settings(AUTUMN_API_URL=server.url, AUTUMN_SECRET_KEY=FIXTURE_SECRET_KEY)
            override.enable()
    except ImportError:  # usable without Django too: just the server
        pass
    try:
        yield server
    finally:
        if override is not None:
            override.disable()
        server.stop()
