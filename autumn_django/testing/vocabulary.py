"""What the generated data is made of: names in many scripts (with JSON-escaping edge
cases), companies and email domains, and the product line (base plans and their weights,
add-ons, credit packs, metered and boolean features, seat pools, billing controls).

``data`` draws customers from these and ``catalogue`` describes the same plans and
features as ``plans.list`` and ``features.list`` answer them.
"""

from __future__ import annotations

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS

FIRST_NAMES = [
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Ethan", "Sofia", "Mateo",
    "José", "Zoë", "François", "Chloé", "Søren", "Björn", "Łukasz", "Małgorzata", "Ángel",
    "Núria", "Çağla", "Jürgen", "Renée", "Ольга", "Дмитрий", "Ἀλέξανδρος", "Siobhán",
]  # fmt: skip
LAST_NAMES = [
    "Smith", "Johnson", "García", "Müller", "Dubois", "Rossi", "Nguyễn", "Kowalski",
    "Østergaard", "Ibáñez", "O'Brien", "van der Berg", "Петрова", "Öztürk", "Dvořák",
]  # fmt: skip
WHOLE_NAMES = [
    # CJK, Hangul, right-to-left scripts, emoji and JSON-escaping edge cases.
    "李伟", "王芳", "张敏", "山田 太郎", "佐藤 花子", "김민준", "이서연", "陳大文",
    "محمد العلي", "فاطمة الزهراء", "أحمد حسن", "דוד כהן", "נועה לוי", "יוסף מזרחי",
    "Ana 🌸", "Zoë ✨", "🚀 Rocket Labs", "Team 🦊 Fox", 'Dwayne "The Rock" J.',
    "Back\\slash & Co", "Tab\tName", "  padded name  ",
]  # fmt: skip
COMPANIES = [
    "Acme GmbH", "Globex Corporation", "Initech", "Umbrella Ltd", "Müller & Söhne AG",
    "株式会社サンプル", "Société Générale de Test", "Stark Industries", "شركة المثال",
    "Wayne Enterprises", "Ōkami Studio", "Hooli", "Pied Piper", "Vandelay Industries",
]  # fmt: skip
EMAIL_DOMAINS = ["example.com", "mail.test", "acme.io", "corp.example.org", "startup.dev"]

BASE_PLANS = ["free", "starter", "pro", "team", "enterprise"]
BASE_WEIGHTS = [35, 25, 25, 10, 5]
ADD_ONS = ["extra_seats", "priority_support", "analytics_addon", "sso_addon", "api_boost",
           "storage_addon"]  # fmt: skip
PACKS = ["credits_100", "credits_1000", "credits_10000"]
PACK_SIZE = {"credits_100": 100, "credits_1000": 1000, "credits_10000": 10000}

# feature_id -> (reset interval or None for continuous use, fractional usage?)
METERED = {
    "messages": ("month", False),
    "api_calls": ("day", False),
    "ai_tokens": ("month", True),
    "storage_gb": (None, True),
    "seats": (None, False),
    "exports": ("week", False),
    "projects": ("year", False),
}
INCLUDED = {
    "free": 100, "starter": 1_000, "pro": 10_000, "team": 50_000, "enterprise": 250_000,
}  # fmt: skip
BOOLEAN_FEATURES = {
    "free": [],
    "starter": ["analytics"],
    "pro": ["analytics", "custom_domain"],
    "team": ["analytics", "custom_domain", "sso", "audit_log"],
    "enterprise": ["analytics", "custom_domain", "sso", "audit_log", "priority_support"],
}
INTERVAL_MS = {"day": DAY_MS, "week": 7 * DAY_MS, "month": 30 * DAY_MS, "year": YEAR_MS}

# Seat plans -> the license (seat-pool) plans they grant: (plan id, name, seats included),
# sorted by plan id as the server sorts a customer's pools. Pools after the first are optional.
LICENSE_POOLS = {
    "team": [("team_member", "Team member", 5)],
    "enterprise": [("enterprise_member", "Enterprise member", 25), ("enterprise_viewer", "Viewer", 10)],
}
# Billing controls a plan gives its customers (shown with ``source: "plan"``).
PLAN_CONTROLS: dict[str, dict[str, list[dict]]] = {
    "team": {"usage_alerts": [{"feature_id": "messages", "enabled": True, "threshold": 80,
                               "threshold_type": "usage_percentage"}]},
    "enterprise": {"spend_limits": [{"feature_id": "ai_tokens", "enabled": True, "limit_type": "absolute",
                                     "overage_limit": 1_000_000}],
                   "overage_allowed": [{"feature_id": "ai_tokens", "enabled": True}]},
}  # fmt: skip
CONTROL_KINDS = ["auto_topups", "spend_limits", "usage_limits", "usage_alerts", "overage_allowed"]
