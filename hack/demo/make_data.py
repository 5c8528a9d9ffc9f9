"""Write the demo's customer file: N synthetic profiles as Parquet (``python make_data.py OUT N``).

A few rows are deliberately bad (invalid emails, duplicates differing in case) so the demo
shows validation counts next to SendGrid's.
"""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Edsger",
    "Margaret",
    "Donald",
    "Barbara",
    "Hedy",
    "Radia",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Dijkstra",
    "Hamilton",
    "Knuth",
    "Liskov",
    "Lamarr",
    "Perlman",
]
CITIES = [
    ("GB", "London"),
    ("US", "Boston"),
    ("NL", "Amsterdam"),
    ("DE", "Berlin"),
    ("FR", "Paris"),
]


def main(out: str, count: int) -> None:
    emails, first, last, country, city, tier = [], [], [], [], [], []
    for i in range(count):
        email = f"customer{i:07d}@example.com"
        if i % 997 == 0:
            email = f"customer{i:07d}-at-example.com"  # invalid
        elif i % 1499 == 0 and i:
            email = f"Customer{i - 1:07d}@Example.com"  # duplicate of the previous row
        emails.append(email)
        first.append(FIRST[i % len(FIRST)])
        last.append(LAST[(i // 10) % len(LAST)])
        country.append(CITIES[i % len(CITIES)][0])
        city.append(CITIES[i % len(CITIES)][1])
        tier.append("gold" if i % 10 == 0 else "silver")
    table = pa.table(
        {
            "email": emails,
            "first_name": first,
            "last_name": last,
            "country": country,
            "city": city,
            "tier": tier,
        }
    )
    pq.write_table(table, out, row_group_size=20_000)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
