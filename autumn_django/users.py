"""Kept for projects that name these: the mapping and linking moved to ``owners``
(customers may belong to another model than users: ``AUTUMN_CUSTOMER_OWNER_MODEL``)."""

from .owners import (  # noqa: F401
    CUSTOMER_ID_PATTERN,
    CustomerFields,
    customer_fields_for,
    default_customer_fields,
)
from .owners import link_owners_to_customers as link_users_to_customers  # noqa: F401
