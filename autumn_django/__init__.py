"""A queryable Django mirror of Autumn (useautumn.com) customers, plans and balances."""

__version__ = "0.1.0"
