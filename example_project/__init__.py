"""A small Django project with autumn_django installed: the demo (scripts/demo.sh) and a
place to try the app by hand (``python example_project/manage.py ...``)."""
