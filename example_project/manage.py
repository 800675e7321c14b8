#!/usr/bin/env python
"""Django's command-line utility for the example project.

Run it from anywhere, e.g. ``python example_project/manage.py migrate`` from the repo root.
"""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    # This file lives inside the `example_project` package, so Python puts that package's
    # directory on sys.path, not the repo root. Replace it: the root is what makes
    # `example_project` (and an uninstalled checkout of `autumn_django`) importable, and the
    # package directory would let its `celery.py` shadow the real `celery` package.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(here)]
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Set up the dev virtualenv (`bash scripts/demo.sh` does) "
            "and activate it: `source .venv/bin/activate`."
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
