"""A local stand-in for Autumn's customer API, for tests, demos and benchmarks.

``AutumnStandIn`` is a real HTTP server on 127.0.0.1 that follows the contract in the
project's ``autumn-api.md`` (including the real server's quirks, such as the null
``next_cursor`` after a full page ending with an id-less customer), with switches to
inject failures. ``make_customers`` builds realistic, deterministic customers to seed it,
``make_entities`` entities (seats, workspaces) for some of them, and ``make_catalogue`` the
features (with a credit system) and plans they use, which features.list and plans.list serve.

    from autumn_django.testing import AutumnStandIn, make_customers

    with AutumnStandIn(customers=make_customers(3000, seed=1)) as server:
        ...  # point AUTUMN_API_URL at server.url

Only the standard library is used, so importing this needs no test dependencies.
"""

from .catalogue import make_catalogue
from .data import make_customers
from .entity_data import make_entities
from .faults import Faults
from .server import AutumnStandIn

__all__ = ["AutumnStandIn", "Faults", "make_catalogue", "make_customers", "make_entities"]
