"""Who owns a customer (issue 15): ``AUTUMN_CUSTOMER_OWNER_MODEL``.

Every test here runs under whichever settings module runs the suite: ``tests.settings``
(customers belong to users) and ``tests.settings_org`` (to ``orgapp.Organization``, with
``AUTUMN_OWNER_FROM_REQUEST`` giving the signed-in user's organisation). scripts/test.sh
runs this file under both."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.template import Context, Template
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from autumn_django.api.permissions import HasFeature
from autumn_django.checks import setting_problems
from autumn_django.conf import get_owner_model, owner_model_label
from autumn_django.features import Reason, check_feature, has_feature
from autumn_django.models import Customer
from autumn_django.owners import customer_fields_for, default_customer_fields, owner_is_user_model
from autumn_django.sync import sync_all_customers, sync_customer
from autumn_django.tasks import create_customer_for_owner_task

from .conftest import published_tasks

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()
BY_USER = owner_is_user_model()
FLAGS = {"sso": {"id": "flag_sso", "plan_id": "pro", "feature_id": "sso", "expires_at": None}}


def make_owner(name: str, email: str = ""):
    """An owner: a user (named ``name``) or an organisation, as the settings say."""
    if BY_USER:
        return User.objects.create_user(name.lower().replace(" ", "_"), email, "x", first_name=name)
    return get_owner_model().objects.create(name=name, email=email)


def rename(owner, name: str, email: str) -> None:
    if BY_USER:
        owner.first_name = name
    else:
        owner.name = name
    owner.email = email
    owner.save()


def member_of(owner):
    """A user whose requests act for ``owner``."""
    if BY_USER:
        return owner
    user = User.objects.create_user(f"member_{owner.pk}", "", "x")
    owner.members.add(user)
    return user


def expected_id(owner) -> str:
    return f"user_{owner.pk}" if BY_USER else f"organization_{owner.pk}"


def autumn_calls(server, endpoint: str) -> list[dict]:
    return [body for name, body in server.requests if name == endpoint]


def owned_customer(server, owner, customer_id: str = "cus_owned") -> Customer:
    """A customer with the flag "sso", mirrored and linked to ``owner``."""
    server.add_customer({"id": customer_id, "name": "Owned", "email": "owned@example.com", "flags": FLAGS})
    row = sync_customer(customer_id)
    Customer.objects.filter(pk=row.pk).update(owner=owner)
    return Customer.objects.get(pk=row.pk)


def test_the_owner_model_is_the_settings():
    assert get_owner_model()._meta.label_lower == owner_model_label().lower()
    assert Customer._meta.get_field("owner").related_model is get_owner_model()


# -- creating an owner creates its customer --------------------------------------------------


def test_creating_an_owner_inline_creates_and_links_its_customer(make_standin, settings):
    server = make_standin(3)
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_AUTO_ENABLE_PLAN_ID = "free"

    owner = make_owner("Acme Corp", "billing@acme.example")

    row = Customer.objects.get(owner=owner)
    assert (row.autumn_id, row.name, row.email) == (expected_id(owner), "Acme Corp", "billing@acme.example")
    assert row.raw == server.get_customer(expected_id(owner))
    calls = autumn_calls(server, "customers.get_or_create")
    assert [call["customer_id"] for call in calls] == [expected_id(owner)]
    assert list(owner.autumn_customers.all()) == [row]


@pytest.mark.skipif(BY_USER, reason="only with an owner model other than users")
def test_creating_a_user_creates_no_customer_when_users_are_not_owners(make_standin, settings):
    server = make_standin(0)
    settings.AUTUMN_TASK_MODE = "inline"
    User.objects.create_user("member", "member@example.com", "x")
    assert server.requests == [] and not Customer.objects.exists()


def test_creating_an_owner_queues_its_task_which_creates_and_links(make_standin, settings, celery_app):
    server = make_standin(0)
    settings.AUTUMN_TASK_MODE = "celery"

    owner = make_owner("Queued Ltd", "q@example.com")

    assert published_tasks(celery_app) == [("autumn_django.create_customer_for_owner", f"({owner.pk!r},)")]
    assert server.requests == [] and not Customer.objects.exists()
    assert create_customer_for_owner_task(owner.pk) == expected_id(owner)
    assert Customer.objects.get(owner=owner).autumn_id == expected_id(owner)


def test_a_mapping_that_raises_does_not_break_creating_an_owner(settings, caplog):
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_CUSTOMER_FIELDS = "tests.test_owners.broken_mapping"
    owner = make_owner("Broken")
    assert type(owner).objects.filter(pk=owner.pk).exists()
    assert f"autumn_django.create_customer_for_owner({owner.pk},) failed" in caplog.text


def broken_mapping(owner):
    raise ValueError("this mapping is broken")


def test_profile_change_updates_autumn_and_the_mirror(make_standin, settings):
    server = make_standin(0)
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_UPDATE_ON_PROFILE_CHANGE = True
    owner = make_owner("Before", "before@example.com")
    server.clear_requests()

    rename(owner, "After", "after@example.com")

    assert autumn_calls(server, "customers.update") == [
        {"customer_id": expected_id(owner), "name": "After", "email": "after@example.com"}]
    row = Customer.objects.get(owner=owner)
    assert (row.name, row.email) == ("After", "after@example.com")

    rename(owner, "After", "after@example.com")  # nothing Autumn sees changed
    assert len(autumn_calls(server, "customers.update")) == 1


def test_the_default_mapping_of_an_owner(settings):
    owner = make_owner("Mapped", "not an email")
    fields = default_customer_fields(owner)
    assert fields == {"customer_id": expected_id(owner), "name": "Mapped", "email": None}
    assert customer_fields_for(owner) == fields


# -- whose customer a check answers for ------------------------------------------------------


def _request(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_checks_by_request_by_owner_and_by_customer(make_standin):
    server = make_standin(0)
    owner = make_owner("Checked")
    row = owned_customer(server, owner)
    member = member_of(owner)
    outsider = User.objects.create_user("outsider", "", "x")

    assert has_feature(owner, "sso") and has_feature(row, "sso")
    assert has_feature(_request(member), "sso")
    assert check_feature(_request(member), "exports").reason is Reason.NO_FEATURE
    assert check_feature(_request(outsider), "sso").reason is Reason.NO_CUSTOMER
    assert check_feature(_request(AnonymousUser()), "sso").reason is Reason.NO_CUSTOMER
    assert check_feature(None, "sso").reason is Reason.NO_CUSTOMER
    if BY_USER:
        assert has_feature(member, "sso")  # request.user keeps working
    else:
        with pytest.raises(TypeError, match=r"orgapp\.Organization"):
            check_feature(member, "sso")


def test_the_permission_and_the_template_tag_answer_for_the_requests_owner(make_standin):
    server = make_standin(0)
    owner = make_owner("Gated")
    owned_customer(server, owner)
    member = member_of(owner)
    outsider = User.objects.create_user("outsider", "", "x")

    class SSOView(APIView):
        permission_classes = [HasFeature("sso")]

        def get(self, request):
            return Response({"ok": True})

    for user, status in ((member, 200), (outsider, 403)):
        request = APIRequestFactory().get("/")
        force_authenticate(request, user=user)
        assert SSOView.as_view()(request).status_code == status

    template = Template('{% load autumn %}{% has_feature "sso" as r %}{{ r.allowed }}|'
                        '{% has_feature "sso" owner=owner as o %}{{ o.allowed }}|'
                        '{{ request|has_feature:"sso" }}')
    assert template.render(Context({"request": _request(member), "owner": owner})) == "True|True|True"
    assert template.render(Context({"request": _request(outsider), "owner": None})) == "False|False|False"


def test_me_is_the_customer_of_the_requests_owner(client, make_standin):
    server = make_standin(0)
    owner = make_owner("Me Inc")
    owned_customer(server, owner)
    client.force_login(member_of(owner))

    response = client.get("/autumn/me/")

    assert response.status_code == 200, response.content
    assert response.json() == server.get_customer("cus_owned")

    client.force_login(User.objects.create_user("stranger", "", "x"))
    assert client.get("/autumn/me/").status_code == 404


# -- the admin ----------------------------------------------------------------------------------


def _owner_url(owner) -> str:
    return f"/admin/{owner._meta.app_label}/{owner._meta.model_name}/{owner.pk}/change/"


def test_the_admin_shows_and_links_the_owner(admin_client, make_standin):
    server = make_standin(0)
    owner = make_owner("Linked Co")
    row = owned_customer(server, owner)

    listing = admin_client.get("/admin/autumn_django/customer/").content.decode()
    page = admin_client.get(f"/admin/autumn_django/customer/{row.pk}/change/").content.decode()

    assert f'<a href="{_owner_url(owner)}">{owner}</a>' in listing
    assert f'href="{_owner_url(owner)}"' in page


def test_the_owner_column_costs_no_query_per_row(admin_client, make_standin):
    make_standin(30, seed=4)
    sync_all_customers()
    url = "/admin/autumn_django/customer/"
    admin_client.get(url)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    without = count()
    for number, row in enumerate(Customer.objects.order_by("pk")):
        Customer.objects.filter(pk=row.pk).update(owner=make_owner(f"Owner {number}"))
    html = admin_client.get(url).content.decode()
    assert html.count(_owner_url(Customer.objects.exclude(owner=None).first().owner)) == 1
    assert count() == without


# -- the full sync links owners -------------------------------------------------------------------


def test_a_full_sync_links_owners_to_their_customers(make_standin, settings):
    server = make_standin(5)
    settings.AUTUMN_TASK_MODE = "off"
    owner = make_owner("Late", "late@example.com")
    unmatched = make_owner("Nobody")
    server.add_customer({"id": expected_id(owner), "name": "Late", "email": "late@example.com"})

    sync_all_customers()

    assert Customer.objects.get(autumn_id=expected_id(owner)).owner == owner
    assert not Customer.objects.filter(owner=unmatched).exists()


# -- checks -----------------------------------------------------------------------------------------


def _ids(*names: str) -> list[str]:
    return [message.id for message in setting_problems(*names)]


@pytest.mark.parametrize(("value", "expected"), [
    ("nope.Organization", ["autumn_django.E028"]),
    ("Organization", ["autumn_django.E028"]),
    (42, ["autumn_django.E028"]),
    ("auth.User", []),
    (None, []),
])
def test_the_owner_setting_names_an_installed_model(settings, value, expected):
    settings.AUTUMN_CUSTOMER_OWNER_MODEL = value
    assert _ids("CUSTOMER_OWNER_MODEL") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("no.such.module.owner_of", ["autumn_django.E029"]),
    ("autumn_django.owners.CUSTOMER_ID_PATTERN", ["autumn_django.E029"]),
    (3, ["autumn_django.E029"]),
    ("tests.orgapp.owners.organization_of", []),
])
def test_the_request_callable_imports_and_is_callable(settings, value, expected):
    settings.AUTUMN_OWNER_FROM_REQUEST = value
    assert _ids("OWNER_FROM_REQUEST", "CUSTOMER_OWNER_MODEL") == expected


def test_the_default_request_callable_is_only_for_user_owners(settings):
    del settings.AUTUMN_OWNER_FROM_REQUEST
    settings.AUTUMN_CUSTOMER_OWNER_MODEL = "orgapp.Organization" if not BY_USER else None
    expected = [] if BY_USER else ["autumn_django.W005"]
    assert _ids("OWNER_FROM_REQUEST", "CUSTOMER_OWNER_MODEL") == expected
    settings.AUTUMN_OWNER_FROM_REQUEST = "tests.orgapp.owners.organization_of"
    assert _ids("OWNER_FROM_REQUEST", "CUSTOMER_OWNER_MODEL") == []


# -- the migration -------------------------------------------------------------------------------


def test_migration_0014_keeps_user_links_or_clears_them_for_another_owner_model():
    """Upgrading through 0014: a link to a user stays when users are the owners, and is
    cleared when the owner model is another (its ids are users', meaningless there); the
    way back to 0013 works as well."""
    before = [("autumn_django", "0013_read_marks_and_rereads")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        user = User.objects.create_user("upgraded", "", "x")
        now = timezone.now()
        old_apps.get_model("autumn_django", "Customer").objects.create(
            env="sandbox", autumn_id="cus_upgraded", created_at=now, synced_at=now, raw={},
            raw_hash="0" * 32, user_id=user.pk)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert Customer.objects.get(autumn_id="cus_upgraded").owner_id == (user.pk if BY_USER else None)
