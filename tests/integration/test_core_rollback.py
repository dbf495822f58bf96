"""Rollback after a publish leaves no trace: no outbox row, no after-commit work, no effect."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import func, select

from tests.conftest import ContextFactory
from tidings import BoundedContext, DomainEvent, DomainEventHandler, IntegrationEvent, UseCase
from tidings.persistence.tables import outbox, publication_log


class InvoiceIssued(DomainEvent):
    invoice_id: str


class InvoiceIssuedIntegrationEvent(IntegrationEvent):
    event_type: ClassVar[str] = "tests.billing.invoice-issued"

    invoice_id: str


class PublishInvoiceIssuedIntegrationEvent(DomainEventHandler):
    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def handle(self, event: InvoiceIssued) -> None:
        self._context.integration_events.publish(
            InvoiceIssuedIntegrationEvent(invoice_id=event.invoice_id)
        )


class MailInvoice(DomainEventHandler):
    def __init__(self) -> None:
        self.mailed: list[str] = []

    def handle(self, event: InvoiceIssued) -> None:
        self.mailed.append(event.invoice_id)


class PaymentGatewayRefused(Exception):
    pass


class IssueInvoiceThenFail(UseCase):
    """Publishes, then fails later in the same use case."""

    def __init__(self, context: BoundedContext) -> None:
        self._context = context

    def execute(self, invoice_id: str) -> None:
        self._context.domain_events.publish(InvoiceIssued(invoice_id=invoice_id))
        raise PaymentGatewayRefused(invoice_id)


def _rows(context: BoundedContext, table: object) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def billing(database_url: str, make_context: ContextFactory) -> tuple[BoundedContext, MailInvoice]:
    context = make_context(database_url, name="billing")
    context.subscribe(PublishInvoiceIssuedIntegrationEvent(context))
    mail = context.subscribe(MailInvoice(), after_commit=True)
    return context, mail


def test_an_exception_after_publishing_leaves_no_outbox_row_and_no_after_commit_work(
    billing: tuple[BoundedContext, MailInvoice],
) -> None:
    context, mail = billing

    with pytest.raises(PaymentGatewayRefused), context.transaction():
        IssueInvoiceThenFail(context).execute("inv-1")

    assert _rows(context, outbox) == 0
    assert _rows(context, publication_log) == 0
    assert context.complete_pending_handlers() == 0
    assert mail.mailed == []


async def test_an_exception_in_an_async_transaction_after_publishing_leaves_no_trace(
    database_url: str, make_async_context: ContextFactory
) -> None:
    context = make_async_context(database_url, name="billing")
    await context.create_tables_async()
    context.subscribe(PublishInvoiceIssuedIntegrationEvent(context))
    mail = context.subscribe(MailInvoice(), after_commit=True)

    with pytest.raises(PaymentGatewayRefused):
        async with context.transaction():
            await context.async_domain_events.publish(InvoiceIssued(invoice_id="inv-1"))
            raise PaymentGatewayRefused("inv-1")

    async with context.async_engine.connect() as connection:
        for table in (outbox, publication_log):
            count = await connection.execute(select(func.count()).select_from(table))
            assert count.scalar_one() == 0
    assert await context.acomplete_pending_handlers() == 0
    assert mail.mailed == []


def test_the_same_use_case_without_the_failure_leaves_one_row_of_each(
    billing: tuple[BoundedContext, MailInvoice],
) -> None:
    context, mail = billing

    with context.transaction():
        context.domain_events.publish(InvoiceIssued(invoice_id="inv-2"))

    assert _rows(context, outbox) == 1
    assert _rows(context, publication_log) == 1
    assert context.pending_handler_count() == 0
    assert mail.mailed == ["inv-2"]
