"""The convergence report: did every context end up agreeing?"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tidings.demo.workload import Shop
from tidings.persistence.tables import dead_letters, outbox


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


def _rows(shop: Shop, context: str, *columns: Any) -> list[Any]:
    with shop.modules[context].context.read_connection() as connection:
        return list(connection.execute(select(*columns)))


def check_convergence(shop: Shop) -> list[Check]:
    """Every invariant the two articles' scenarios promise, checked across databases."""
    from examples.ecommerce.ordering.persistence import orders

    order_rows = _rows(
        shop, "ordering", orders.c.id, orders.c.user_id, orders.c.status, orders.c.lines_json
    )
    return [
        _basket_prices(shop),
        _one_email_per_confirmed_order(shop, order_rows),
        _orders_paid(order_rows),
        _one_buyer_per_customer(shop, order_rows),
        _reservations_match_orders(shop, order_rows),
        _no_dead_letters(shop),
        _outboxes_drained(shop),
        _traces_complete(shop),
    ]


def _basket_prices(shop: Shop) -> Check:
    from examples.ecommerce.basket.persistence import basket_items
    from examples.ecommerce.catalog.persistence import products

    prices = dict(_rows(shop, "catalog", products.c.id, products.c.price))
    items = _rows(shop, "basket", basket_items.c.product_id, basket_items.c.unit_price)
    stale = [product for product, price in items if prices.get(product) != price]
    return Check(
        "basket prices equal catalog prices",
        not stale,
        f"{len(items)} basket items, {len(stale)} with a stale price",
    )


def _one_email_per_confirmed_order(shop: Shop, order_rows: list[Any]) -> Check:
    from examples.ecommerce.notifications.persistence import mailbox

    confirmed = {row.id for row in order_rows if row.status in ("confirmed", "paid")}
    emails = Counter(order for (order,) in _rows(shop, "notifications", mailbox.c.order_id))
    missing = confirmed - set(emails)
    doubled = [order for order, count in emails.items() if count > 1]
    return Check(
        "every confirmed order has exactly one email",
        not missing and not doubled and set(emails) <= confirmed,
        f"{len(confirmed)} confirmed orders, {len(emails)} emails, {len(missing)} missing",
    )


def _orders_paid(order_rows: list[Any]) -> Check:
    paid = sum(1 for row in order_rows if row.status == "paid")
    return Check(
        "every confirmed order is paid",
        paid == len(order_rows),
        f"{paid} of {len(order_rows)} orders paid",
    )


def _one_buyer_per_customer(shop: Shop, order_rows: list[Any]) -> Check:
    from examples.ecommerce.ordering.persistence import buyers

    customers = {row.user_id for row in order_rows}
    buyer_ids = [user for (user,) in _rows(shop, "ordering", buyers.c.user_id)]
    return Check(
        "one buyer per customer who ordered",
        sorted(buyer_ids) == sorted(customers),
        f"{len(customers)} customers ordered, {len(buyer_ids)} buyers",
    )


def _reservations_match_orders(shop: Shop, order_rows: list[Any]) -> Check:
    from examples.ecommerce.inventory.persistence import stock_items

    ordered: Counter[str] = Counter()
    for row in order_rows:
        for product_id, quantity, _ in json.loads(row.lines_json):
            ordered[product_id] += int(quantity)
    reserved = dict(_rows(shop, "inventory", stock_items.c.product_id, stock_items.c.reserved))
    wrong = [p for p in set(ordered) | set(reserved) if ordered[p] != reserved.get(p, 0)]
    return Check(
        "inventory reservations match ordered quantities",
        not wrong,
        f"{sum(ordered.values())} units ordered, {sum(reserved.values())} reserved",
    )


def _no_dead_letters(shop: Shop) -> Check:
    letters = {name: shop.count(name, dead_letters) for name in shop.modules}
    return Check(
        "no dead letters",
        not any(letters.values()),
        ", ".join(f"{name}: {count}" for name, count in letters.items() if count) or "none",
    )


def _outboxes_drained(shop: Shop) -> Check:
    pending = {
        name: shop.count(name, outbox, outbox.c.published_at.is_(None)) for name in shop.modules
    }
    return Check(
        "every outbox drained",
        not any(pending.values()),
        ", ".join(f"{name}: {count}" for name, count in pending.items() if count) or "all empty",
    )


def _traces_complete(shop: Shop) -> Check:
    from tidings.causality.auditing import audit

    found = audit([module.context for module in shop.modules.values()])
    return Check(
        "every use case has a complete trace",
        not found.incomplete and not found.missing and not found.invented,
        f"{len(found.traces)} use cases, {len(found.incomplete)} incomplete; "
        f"{found.missing} missing and {found.invented} invented links",
    )
