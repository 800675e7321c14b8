"""The example project's organisations: its Autumn customers are organisations, not users
(``AUTUMN_CUSTOMER_OWNER_MODEL = "accounts.Organization"``)."""
