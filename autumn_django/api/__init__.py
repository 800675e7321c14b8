"""A REST API over the mirror (Django REST framework), included by the project with

    path("autumn/", include("autumn_django.api.urls"))

``me/`` serves the signed-in user's customer in Autumn's own JSON shape; ``customers/``
and ``customers/<autumn_id>/`` are for staff.
"""
