"""The scripted workload: what users do to the shop while the contexts run.

The driver plays the web front end of each context: it calls their use cases in
their own transactions. Everything else - copies of users and prices, buyers,
payments, stock, emails - happens through domain and integration events.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

from sqlalchemy import func, select

from tidings.domain.ids import uuid7


@dataclass(frozen=True, slots=True)
class WorkloadSize:
    users: int = 20
    products: int = 30
    orders: int = 60
    price_changes: int = 30
    initial_stock: int = 10_000


class Shop:
    """The example contexts, imported once the environment names their databases."""

    def __init__(self) -> None:
        from examples.ecommerce import (
            basket,
            catalog,
            identity,
            inventory,
            notifications,
            ordering,
            payments,
        )

        self.modules: dict[str, ModuleType] = {
            "identity": identity,
            "catalog": catalog,
            "basket": basket,
            "ordering": ordering,
            "payments": payments,
            "inventory": inventory,
            "notifications": notifications,
        }

    def create_tables(self) -> None:
        for module in self.modules.values():
            module.context.create_tables()
            module.business_metadata.create_all(module.context.engine)

    def declare_subscriptions(self) -> None:
        """Every consuming context subscribes before anything is published."""
        from tidings.consumer.consumer import Consumer

        for module in self.modules.values():
            if module.context.integration_handlers:
                asyncio.run(Consumer(module.context).declare())

    def delete_subscriptions(self) -> None:
        """Remove the run's subscriptions from a real broker, so none keeps filling up."""
        for module in self.modules.values():
            if module.context.integration_handlers:
                asyncio.run(_delete_subscription(module.context))

    def count(self, context: str, table: Any, *where: Any) -> int:
        with self.modules[context].context.read_connection() as connection:
            query = select(func.count()).select_from(table)
            if where:
                query = query.where(*where)
            return int(connection.execute(query).scalar_one())

    def dispose(self) -> None:
        for module in self.modules.values():
            module.context.dispose()


async def _delete_subscription(context: Any) -> None:
    from tidings.transports.registry import open_transport

    async with open_transport(context.broker_url) as transport:
        await transport.delete_subscription(context.consumer_group)


class Workload:
    """Drives the shop in phases, reporting progress through ``on_step``."""

    def __init__(self, shop: Shop, size: WorkloadSize, seed: int = 7) -> None:
        self.shop = shop
        self.size = size
        self.random = random.Random(seed)
        self.user_ids = [f"user-{i:04d}" for i in range(size.users)]
        self.product_ids = [f"product-{i:04d}" for i in range(size.products)]
        self.prices: dict[str, Decimal] = {}
        self.commands = 0

    def _run(self, context: str, use_case: str, *args: Any) -> None:
        """Run one use case of ``context`` in its own transaction, as a web request would."""
        module = self.shop.modules[context]
        with module.context.transaction():
            getattr(module, use_case).execute(*args)
        self.commands += 1

    def seed_shop(self) -> None:
        """Users register, products are added, stocked and put on sale."""
        for index, user_id in enumerate(self.user_ids):
            name, email = f"Customer {index}", f"customer{index}@example.com"
            self._run("identity", "register_user", user_id, name, email)
        for index, product_id in enumerate(self.product_ids):
            price = Decimal(self.random.randint(500, 20_000)) / 100
            self.prices[product_id] = price
            self._run("catalog", "add_product", product_id, f"Product {index}", price)
            self._run("inventory", "restock", product_id, self.size.initial_stock)
            self._run("catalog", "put_product_on_sale", product_id)

    def copies_arrived(self) -> bool:
        """Ordering knows every user and Basket every product price."""
        from examples.ecommerce.basket.persistence import product_prices
        from examples.ecommerce.ordering.persistence import customers

        return self.shop.count("ordering", customers) >= self.size.users and (
            self.shop.count("basket", product_prices) >= self.size.products
        )

    def shop_and_order(self) -> None:
        """Baskets fill, prices change underneath them, orders are placed and confirmed."""
        changes_left = self.size.price_changes
        for number in range(self.size.orders):
            user_id = self.random.choice(self.user_ids)
            picked = self.random.sample(self.product_ids, k=min(3, len(self.product_ids)))
            lines = [(p, self.random.randint(1, 3), self.prices[p]) for p in picked]
            for product_id, quantity, _ in lines:
                self._run("basket", "add_item_to_basket", user_id, product_id, quantity)
            order_id = str(uuid7())
            self._run("ordering", "start_order", order_id, user_id, lines)
            self._run("ordering", "confirm_order", order_id)
            # Spread the price changes over the run, so they race with the baskets.
            due = round(self.size.price_changes * (number + 1) / self.size.orders)
            while self.size.price_changes - changes_left < due:
                changes_left -= 1
                self._change_a_price()
        while changes_left > 0:
            changes_left -= 1
            self._change_a_price()

    def _change_a_price(self) -> None:
        product_id = self.random.choice(self.product_ids)
        step = Decimal(self.random.choice((-150, -50, 75, 125))) / 100
        price = max(self.prices[product_id] + step, Decimal("1.00"))
        self.prices[product_id] = price
        self._run("catalog", "change_product_price", product_id, price)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
