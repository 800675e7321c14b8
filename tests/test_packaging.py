"""What ``pip install autumn-django`` gives a project: the built wheel and sdist carry every
template, static file and the typing marker, the metadata a package index shows, and the
suite runs against that installed package rather than the source tree.

``scripts/test.sh`` builds the wheel and the sdist, installs the wheel into each leg's
virtualenv and passes their paths (``AUTUMN_TEST_WHEEL``, ``AUTUMN_TEST_SDIST``,
``AUTUMN_TEST_SOURCE``, ``AUTUMN_TEST_INSTALLED=1``). Run from a checkout without them,
the dist tests build their own wheel and sdist from the checkout.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

import autumn_django
from autumn_django.models import Customer

from .conftest import REPO_ROOT, run_manage

INSTALLED = os.environ.get("AUTUMN_TEST_INSTALLED") == "1"
SOURCE = Path(os.environ.get("AUTUMN_TEST_SOURCE") or REPO_ROOT)
# Files the package must carry besides its modules, relative to autumn_django/.
DATA_DIRS = ("templates", "static")


def package_data_in_source() -> set[str]:
    package = SOURCE / "autumn_django"
    found = {"py.typed"}
    for folder in DATA_DIRS:
        found |= {path.relative_to(package).as_posix()
                  for path in (package / folder).rglob("*") if path.is_file()}
    return found


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    wheel, sdist = os.environ.get("AUTUMN_TEST_WHEEL"), os.environ.get("AUTUMN_TEST_SDIST")
    if wheel and sdist:
        return Path(wheel), Path(sdist)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(out),
                    str(SOURCE)], check=True, capture_output=True, timeout=600)
    return next(out.glob("*.whl")), next(out.glob("*.tar.gz"))


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_carries_every_template_static_file_and_the_typing_marker(dists):
    wheel, _ = dists
    expected = package_data_in_source()
    assert any(name.startswith("templates/") for name in expected)
    assert any(name.startswith("static/") for name in expected)
    with zipfile.ZipFile(wheel) as archive:
        carried = {name.removeprefix("autumn_django/") for name in archive.namelist()
                   if name.startswith("autumn_django/")}
        licenses = [name for name in archive.namelist() if re.search(r"dist-info/(licenses/)?LICENSE", name)]
    assert expected - carried == set(), "files missing from the wheel"
    assert licenses, "the wheel carries no LICENSE"


def test_the_sdist_carries_them_too_with_the_license_and_changelog(dists):
    _, sdist = dists
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {f"autumn_django/{name}" for name in package_data_in_source()} - names
    assert missing == set(), "files missing from the sdist"
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names


def test_the_metadata_a_package_index_shows(dists):
    meta = wheel_metadata(dists[0])
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.10"
    requires = meta.get_all("Requires-Dist")
    assert any(re.fullmatch(r"[Dd]jango<6\.2,>=5\.2|[Dd]jango>=5\.2,<6\.2", r) for r in requires), requires
    classifiers = set(meta.get_all("Classifier"))
    assert {"Typing :: Typed", "Framework :: Django :: 5.2", "Framework :: Django :: 6.0",
            "Framework :: Django :: 6.1", "Programming Language :: Python :: 3.13"} <= classifiers
    assert "speedups" in meta.get_all("Provides-Extra")
    assert not any(c.startswith("License ::") for c in classifiers), "the SPDX expression replaces it"


def test_the_long_description_has_no_link_that_breaks_on_a_package_index(dists):
    """A package index renders the README away from the repository: a relative link or
    image there points nowhere."""
    description = wheel_metadata(dists[0]).get_payload()
    targets = re.findall(r"\]\(([^)\s]+)", description)
    assert targets, "the README links to nothing at all?"
    relative = [t for t in targets if not re.match(r"(https?://|#|mailto:)", t)]
    assert relative == []


@pytest.mark.skipif(not INSTALLED, reason="scripts/test.sh runs the suite against the installed wheel")
def test_the_suite_imports_the_installed_package_not_the_source_tree():
    installed = Path(autumn_django.__file__).resolve().parent
    assert installed.is_relative_to(Path(sysconfig.get_paths()["purelib"]).resolve())
    assert installed != (SOURCE / "autumn_django").resolve()
    # Child processes the suite starts (commands, workers, the stand-in) import it too.
    child = run_manage("shell", "-c", "import autumn_django; print(autumn_django.__file__)")
    assert child.returncode == 0, child.stderr
    # (Django 6 shells print what they imported first: the path is the last line.)
    assert Path(child.stdout.strip().splitlines()[-1]).resolve().parent == installed


@pytest.mark.django_db
def test_a_customer_page_renders_under_manifest_static_storage(admin_client, make_standin, tmp_path):
    """With ManifestStaticFilesStorage a static file missing from the package is a 500 on
    every page that names it (``Missing staticfiles manifest entry``)."""
    from autumn_django.sync import sync_all_customers

    make_standin(2, seed=11)
    sync_all_customers()
    storages = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"}}
    with override_settings(STORAGES=storages, STATIC_ROOT=str(tmp_path)):
        call_command("collectstatic", interactive=False, verbosity=0)
        customer = Customer.objects.first()
        response = admin_client.get(f"/admin/autumn_django/customer/{customer.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r"autumn_django/admin\.[0-9a-f]{12}\.css", page), "the app's stylesheet, hashed"
    assert "Refresh from Autumn" in page, "the app's change form template"


def test_the_distribution_version_is_the_packages(dists):
    assert wheel_metadata(dists[0])["Version"] == autumn_django.__version__
    assert dists[0].name.startswith(f"autumn_django-{autumn_django.__version__}-")
