"""Child process of the crash tests: ship one parcel, then (maybe) die in the handler.

Usage: ``python -m tests.support.crash_after_commit DATABASE_URL PARCEL_ID``
"""

from __future__ import annotations

import sys

from tests.support.crash_app import ShipParcel, build


def main(database_url: str, parcel_id: str) -> None:
    context = build(database_url)
    with context.transaction():
        ShipParcel(context).execute(parcel_id)
    context.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
