"""A REST API over the mirror (Django REST framework), included by the project with

    path("autumn/", include("autumn_django.api.urls"))

``me/`` serves the customer of the request's owner (the signed-in user by default;
``AUTUMN_OWNER_FROM_REQUEST``) in Autumn's own JSON shape, with its entities when asked
(``?expand=entities``); ``customers/``, ``customers/<autumn_id>/`` and ``entities/`` are
for staff.
"""
