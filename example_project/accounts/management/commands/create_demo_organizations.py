"""Create the demo's organisations: each becomes an Autumn customer (``organization_<pk>``)
as it is created, through autumn_django's receivers (inline in the demo)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from example_project.accounts.models import Organization

DEMO_ORGANIZATIONS = [
    ("Acme Corp", "billing@acme.example"),
    ("Globex", "accounts@globex.example"),
    ("Initech", "finance@initech.example"),
]


class Command(BaseCommand):
    help = "Create a few organisations (each gets its Autumn customer), with --member as a member."

    def add_arguments(self, parser):
        parser.add_argument("--member", help="username to add to every organisation")

    def handle(self, *args, member=None, **options):
        user = get_user_model().objects.get_by_natural_key(member) if member else None
        for name, email in DEMO_ORGANIZATIONS:
            organization, created = Organization.objects.get_or_create(name=name, defaults={"email": email})
            if user is not None:
                organization.members.add(user)
            customers = ", ".join(organization.autumn_customers.values_list("autumn_id", flat=True))
            self.stdout.write(f"{'Created' if created else 'Found'} {name}: Autumn customer "
                              f"{customers or '(none yet: the next sync links it)'}")
