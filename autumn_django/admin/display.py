"""How the admin shows the mirror's values: amounts, usage, times, links and JSON.

Every value that came from Autumn (names, ids, metadata) is user data, so HTML is only
ever built with ``format_html``, which escapes its arguments.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..conf import autumn_settings
from ..models import Balance, Customer, Env

EMPTY = "—"
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
# Where the usage bar turns amber, then red (fractions of the grant).
WARN_AT, DANGER_AT = 0.75, 0.9


def format_amount(value: float | None) -> str:
    """A balance count for people: grouped digits, and at most two decimals for the
    fractional counts Autumn allows (12.5 tokens), without trailing zeros."""
    if value is None:
        return EMPTY
    if not math.isfinite(value):
        return str(value)
    rounded = round(float(value), 2)  # an int from JSON (a credit cost) has no is_integer before 3.12
    if rounded.is_integer():
        return number_format(int(rounded), force_grouping=True)
    places = 1 if round(value, 1) == rounded else 2
    return number_format(rounded, decimal_pos=places, force_grouping=True)


def usage_percent(balance: Balance) -> float | None:
    """Usage as a percentage of the grant; None when unlimited or nothing was granted.

    Over 100 when overage is allowed. Matches the ``usage_percent`` annotation the
    balance list sorts by.
    """
    if balance.unlimited or not balance.granted or balance.granted <= 0 or balance.usage is None:
        return None
    return balance.usage / balance.granted * 100


def format_percent(value: float | None) -> str:
    if value is None:
        return EMPTY
    return f"{format_amount(value)}%"


def reset_due_at(balance: Balance) -> datetime | None:
    """When the balance's reset came due, if its reset time (or a breakdown entry's) has
    passed. Autumn applies a due reset only when the customer is next read through
    ``customers.get``, so until a sync or refresh does, the mirror shows last period's usage
    of a balance that is in truth back to its grant."""
    now = timezone.now()
    due = balance.next_reset_at if balance.next_reset_at and balance.next_reset_at <= now else None
    for entry in balance.breakdown if isinstance(balance.breakdown, list) else ():
        reset = entry.get("reset") if isinstance(entry, dict) else None
        at = reset.get("resets_at") if isinstance(reset, dict) else None
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            when = _EPOCH + timedelta(milliseconds=at)
            if when <= now and (due is None or when < due):
                due = when
    return due


def reset_due(due: datetime) -> SafeString:
    """The "reset due" marker, with the time it came due."""
    return format_html(
        '<span class="autumn-badge autumn-badge-reset" title="{}">{}</span> {}',
        _("Autumn resets this balance to its grant the next time it reads the customer "
          "(customers.get); the mirror shows the usage from before the reset until then."),
        _("reset due"), local_datetime(due))


def remaining_amount(balance: Balance) -> SafeString | str:
    """The remaining count; for a balance whose reset is due, with what it resets to."""
    if balance.unlimited:
        return _("unlimited")
    shown = format_amount(balance.remaining)
    if reset_due_at(balance) is None or balance.granted is None:
        return shown
    return format_html('{} <span class="autumn-reset-to">{}</span>', shown,
                       _("→ %(granted)s at its reset") % {"granted": format_amount(balance.granted)})


def next_reset(balance: Balance) -> SafeString | str:
    """The next reset in the active time zone, or the "reset due" marker once it passed."""
    due = reset_due_at(balance)
    return reset_due(due) if due is not None else local_datetime(balance.next_reset_at)


def usage_bar(balance: Balance) -> SafeString | str:
    """A ``<meter>`` of usage against the grant, with the numbers beside it; for a balance
    whose reset is due, the "reset due" marker instead of last period's usage.

    A native meter is accessible and needs no script; its low/high/optimum attributes make
    browsers draw it green, amber past 75% and red past 90% (and when over the grant, where
    it is drawn full).
    """
    if balance.unlimited:
        return format_html('<span class="autumn-unlimited">{}</span>', _("Unlimited"))
    due = reset_due_at(balance)
    if due is not None:
        return reset_due(due)
    percent = usage_percent(balance)
    if percent is None:
        return EMPTY
    return meter(balance.usage, balance.granted, _("%(used)s of %(granted)s used") % {
        "used": format_amount(balance.usage), "granted": format_amount(balance.granted)})


def meter(usage: float, granted: float, label: str) -> SafeString:
    """A ``<meter>`` of ``usage`` against ``granted`` (> 0), with ``label`` as its title
    and text, and the percentage beside it: what the balance and seat bars share."""
    percent = usage / granted * 100
    return format_html(
        '<span class="autumn-usage{}"><meter min="0" max="{}" low="{}" high="{}" optimum="0" '
        'value="{}" title="{}">{}</meter> <span class="autumn-usage-percent">{}</span></span>',
        " autumn-usage-over" if usage > granted else "",
        repr(float(granted)), repr(granted * WARN_AT), repr(granted * DANGER_AT),
        repr(float(usage)), label, label, format_percent(percent),
    )


def local_datetime_text(value: datetime) -> str:
    """A time in the active time zone (Django's ``localtime``), with the zone's name, so
    nobody has to guess whether a reset at "00:00" is theirs or UTC's."""
    local = timezone.localtime(value)
    return f"{date_format(local, 'DATETIME_FORMAT')} {local.tzname()}"


def local_datetime(value: datetime | None) -> SafeString | str:
    if value is None:
        return EMPTY
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), local_datetime_text(value))


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return EMPTY
    seconds = value.total_seconds()
    if seconds < 60:
        return _("%(seconds).1f s") % {"seconds": seconds}
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": seconds}
    hours, minutes = divmod(minutes, 60)
    return _("%(hours)d h %(minutes)02d min") % {"hours": hours, "minutes": minutes}


def dashboard_url(customer: Customer) -> str | None:
    """The customer's page in Autumn's dashboard (sandbox customers live under /sandbox)."""
    if not customer.autumn_id:
        return None
    base = autumn_settings.DASHBOARD_URL.rstrip("/")
    prefix = "/sandbox" if customer.env == Env.SANDBOX else ""
    return f"{base}{prefix}/customers/{quote(customer.autumn_id, safe='')}"


def admin_change_url(admin_site: Any, obj: Any) -> str | None:
    """``obj``'s change page on ``admin_site``; None when its model is not registered there."""
    if not admin_site.is_registered(type(obj)):
        return None
    opts = obj._meta
    try:
        return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return format_html('<pre class="autumn-json">{}</pre>', text)


def folded_json(value: Any, summary: str) -> SafeString:
    """JSON in a ``<details>``: there when needed, one line when not. Credentials of third
    parties in it (a customer's ``processors.vercel`` token) are hidden."""
    return format_html('<details class="autumn-details"><summary>{}</summary>{}</details>',
                       summary, pretty_json(without_secrets(value)))


# Keys whose values are credentials of someone else's (Vercel's installation token, for
# one): kept as received, in the mirror and for signal receivers, but never shown.
SECRET_KEYS = frozenset({"access_token", "secret", "client_secret", "api_key", "token"})
HIDDEN = "*** (hidden)"


def without_secrets(value: Any) -> Any:
    """``value`` with every secret-named key's value hidden, at any depth."""
    if isinstance(value, dict):
        return {key: HIDDEN if key in SECRET_KEYS and item is not None else without_secrets(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [without_secrets(item) for item in value]
    return value


def deleted_mark(row: Any) -> SafeString | str:
    """The "deleted" marker of a customer or entity Autumn no longer has, with since when;
    nothing for a present one (a column of markers on healthy rows hides the few that matter)."""
    if row.deleted_at is None:
        return ""
    return format_html('<span class="autumn-badge" title="{}">{}</span>',
                       _("gone from Autumn since %(time)s") % {"time": local_datetime_text(row.deleted_at)},
                       _("deleted"))


def named_link(url: str | None, obj: Any, name: str | None) -> SafeString:
    """``obj`` (its id) with its name, linked to ``url`` when there is one. ``<bdi>``: a
    right-to-left name must not reorder the rest of the row."""
    label = f"{obj} ({name})" if name and name != str(obj) else str(obj)
    if url is None:
        return format_html("<bdi>{}</bdi>", label)
    return format_html('<a href="{}"><bdi>{}</bdi></a>', url, label)
