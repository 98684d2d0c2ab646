"""The analysts' report: conversions, revenue, payout, CR and EPC by chosen dimensions, and refusals.

Pure SQL builders over the hourly aggregates, plus formatting. Conversions count at
their latest status: `conversions` are approved ones, `pending` holds pending and
hold, `reversed` those later rejected by the advertiser. CR = conversions / clicks,
EPC = revenue / clicks (USD). Clicks carry no country or event, so grouping by those
puts clicks under ""; by attribution, clicks sit on the `click` row and view-through
conversions have a `view` row of their own (no clicks: no CR or EPC).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

DIMENSIONS: dict[str, tuple[str, str]] = {
    # name: (expression on conversions_hourly, expression on clicks_hourly)
    "hour": ("hour", "hour"),
    "day": ("toDate(hour)", "toDate(hour)"),
    "offer": ("offer_id", "offer_id"),
    "campaign": ("campaign_id", "campaign_id"),
    "publisher": ("publisher_id", "publisher_id"),
    "country": ("country_code", "''"),
    "event": ("event_name", "''"),
    # click or view (README "View-through attribution"); clicks count under `click`.
    "attribution": ("attribution_type", "'click'"),
}


def _where(since: datetime | None, until: datetime | None) -> str:
    clauses = ["1"]
    if since is not None:
        clauses.append(f"hour >= toDateTime('{since:%Y-%m-%d %H:%M:%S}', 'UTC')")
    if until is not None:
        clauses.append(f"hour < toDateTime('{until:%Y-%m-%d %H:%M:%S}', 'UTC')")
    return " AND ".join(clauses)


def report_sql(by: Sequence[str], since: datetime | None = None, until: datetime | None = None) -> str:
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimensions {unknown}; choose from {sorted(DIMENSIONS)}")
    where = _where(since, until)
    conv_dims = [f"{DIMENSIONS[d][0]} AS {d}" for d in by]
    click_dims = [f"{DIMENSIONS[d][1]} AS {d}" for d in by]
    group = ", ".join(by) if by else "tuple()"
    names = "".join(f"{d}, " for d in by)
    return f"""
SELECT {names}
    sum(clicks) AS clicks, sum(approved) AS conversions, sum(pending) AS pending, sum(reversed) AS reversed,
    sum(revenue) AS revenue_usd, sum(payout) AS payout_usd,
    if(clicks > 0, round(conversions / clicks, 6), NULL) AS cr,
    if(clicks > 0, round(toFloat64(revenue_usd) / clicks, 6), NULL) AS epc
FROM
(
    SELECT {"".join(f"{c}, " for c in click_dims)}
        toInt64(sum(clicks)) AS clicks, toInt64(0) AS approved, toInt64(0) AS pending, toInt64(0) AS reversed,
        toDecimal128(0, 6) AS revenue, toDecimal128(0, 6) AS payout
    FROM clicks_hourly WHERE {where} GROUP BY {group}
    UNION ALL
    SELECT {"".join(f"{c}, " for c in conv_dims)}
        toInt64(0), sumIf(conversions, status = 'approved'),
        sumIf(conversions, status IN ('pending', 'hold')), sumIf(conversions, status = 'rejected'),
        sumIf(revenue_usd, status = 'approved'), sumIf(payout_usd, status = 'approved')
    FROM conversions_hourly WHERE {where} GROUP BY {group}
)
GROUP BY {group}
HAVING clicks != 0 OR conversions != 0 OR pending != 0 OR reversed != 0
ORDER BY {group}
"""


def refusals_sql(since: datetime | None = None, until: datetime | None = None) -> str:
    """Refused and duplicate postbacks by reason; conversions flagged by a fraud signal (`flagged`)."""
    where = _where(since, until)
    return f"""
SELECT kind, stage, reason, postbacks FROM
(
    SELECT 'rejected' AS kind, stage, reason, toInt64(sum(rejected)) AS postbacks
    FROM rejections_hourly WHERE {where} GROUP BY stage, reason
    UNION ALL
    SELECT 'duplicate' AS kind, 'stream' AS stage, reason, toInt64(sum(duplicates)) AS postbacks
    FROM duplicates_hourly WHERE {where} GROUP BY reason
    UNION ALL
    SELECT 'flagged' AS kind, 'stream' AS stage, flag AS reason, toInt64(sum(conversions)) AS postbacks
    FROM fraud_flags_hourly WHERE {where} GROUP BY flag
)
WHERE postbacks != 0
ORDER BY kind, stage, reason
"""


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=2)
    if fmt == "csv":  # Unix line ends, and none after the last row: the caller prints one
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return out.getvalue().removesuffix("\n")
    cells = [list(columns)] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
