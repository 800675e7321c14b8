"""Admin pages for browsing the mirror. Everything here is read-only: syncs write it."""

from django.contrib import admin

from .models import Balance, Customer, Flag, Purchase, Subscription, SyncRun


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SubscriptionInline(ReadOnlyInline):
    model = Subscription
    fields = ("plan_id", "status", "past_due", "add_on", "quantity", "current_period_end",
              "canceled_at", "trial_ends_at")


class PurchaseInline(ReadOnlyInline):
    model = Purchase
    fields = ("plan_id", "quantity", "started_at", "expires_at")


class BalanceInline(ReadOnlyInline):
    model = Balance
    fields = ("feature_id", "granted", "usage", "remaining", "unlimited", "overage_allowed",
              "next_reset_at")


class FlagInline(ReadOnlyInline):
    model = Flag
    fields = ("feature_id", "plan_id", "expires_at")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ("autumn_id", "name", "email", "env", "synced_at", "deleted_at")
    list_filter = ("env",)
    search_fields = ("=autumn_id", "name", "email")
    show_full_result_count = False
    inlines = (SubscriptionInline, PurchaseInline, BalanceInline, FlagInline)
    exclude = ("raw",)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ("pk", "env", "status", "started_at", "finished_at", "pages", "created",
                    "updated", "unchanged", "deleted", "skipped")
    list_filter = ("env", "status")
    exclude = ("lease_token",)


# Webhook events have their admin beside their view.
from .webhooks import admin as _webhook_admin  # noqa: E402, F401
