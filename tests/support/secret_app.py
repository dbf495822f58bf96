"""The two contexts of the secret scan, for ``tidings … tests.support.secret_app:catalog``
and ``…:basket``: the consumer tests' catalog and basket, with the URLs (passwords and
all) taken from the environment variables below."""

from __future__ import annotations

import os

from tests.support import consumer_app
from tidings import BoundedContext

CATALOG_DATABASE_ENV = "TIDINGS_SECRET_TEST_CATALOG_DATABASE_URL"
BASKET_DATABASE_ENV = "TIDINGS_SECRET_TEST_BASKET_DATABASE_URL"
BROKER_ENV = "TIDINGS_SECRET_TEST_BROKER_URL"


def catalog() -> BoundedContext:
    return consumer_app.build_catalog(os.environ[CATALOG_DATABASE_ENV], os.environ[BROKER_ENV])


def basket() -> BoundedContext:
    return consumer_app.build_basket(
        os.environ[BASKET_DATABASE_ENV], os.environ[BROKER_ENV], create=False
    )
