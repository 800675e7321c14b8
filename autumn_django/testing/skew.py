"""A skewed ``created_at`` distribution for generated customers: customers bunch in time.

``make_customers`` spreads customers evenly over two years. Real organisations do not: a
launch day brings a crowd, an import creates thousands within the hour. A crawl that
splits the ``created_at`` key space into windows must cope with that (issue 17), so the
benchmark serves data where it happens: ``skew_created_at`` moves a share of the customers
onto one launch day and another share into one import hour, deterministically for a seed.
``make_customers``'s own output is left as it is.
"""

from __future__ import annotations

import random
from typing import Any

from .vocabulary import DAY_MS

HOUR_MS = 3_600_000
LAUNCH_SHARE = 0.30
IMPORT_SHARE = 0.20
# Where in the data's time span the two crowds sit (0 = oldest customer, 1 = newest).
LAUNCH_AT = 0.35
IMPORT_AT = 0.80


def skew_created_at(customers: list[dict[str, Any]], seed: int = 0, *, launch_share: float = LAUNCH_SHARE,
                    import_share: float = IMPORT_SHARE) -> list[dict[str, Any]]:
    """``customers`` with ``launch_share`` of them created on one UTC day and
    ``import_share`` within one hour; the rest keep their ``created_at``.

    Returns new top-level dicts (the nested values are shared with the input). Customers
    whose ``created_at`` is not an integer are left alone and do not count.
    """
    if not (0 <= launch_share <= 1 and 0 <= import_share <= 1 and launch_share + import_share <= 1):
        raise ValueError("launch_share and import_share must be between 0 and 1 and add up to at most 1")
    timed = [i for i, c in enumerate(customers) if isinstance(c, dict)
             and isinstance(c.get("created_at"), int) and not isinstance(c["created_at"], bool)]
    out = list(customers)
    if not timed:
        return out
    oldest = min(customers[i]["created_at"] for i in timed)
    newest = max(customers[i]["created_at"] for i in timed)
    span = newest - oldest
    # A UTC day and a clock hour, as a launch and an import happen.
    launch_day = (oldest + int(span * LAUNCH_AT)) // DAY_MS * DAY_MS
    import_hour = (oldest + int(span * IMPORT_AT)) // HOUR_MS * HOUR_MS
    draws = random.Random(f"autumn-skew:{seed}")
    picked = list(timed)
    draws.shuffle(picked)
    n_launch, n_import = round(len(timed) * launch_share), round(len(timed) * import_share)
    for i in picked[:n_launch]:
        out[i] = {**customers[i], "created_at": launch_day + draws.randrange(DAY_MS)}
    for i in picked[n_launch:n_launch + n_import]:
        out[i] = {**customers[i], "created_at": import_hour + draws.randrange(HOUR_MS)}
    return out
