"""A small app for the suite's second settings module (``tests.settings_org``): customers
belong to organisations, not users (``AUTUMN_CUSTOMER_OWNER_MODEL = "orgapp.Organization"``)."""
