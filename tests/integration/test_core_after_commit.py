"""After-commit handlers are retried with a growing backoff and complete exactly once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.conftest import ContextFactory
from tidings import BoundedContext, DomainEvent, DomainEventHandler, RetryPolicy
from tidings.persistence.tables import publication_log

POLICY = RetryPolicy(initial_delay=0.02, max_delay=0.5, jitter=0.0)


class ReportRequested(DomainEvent):
    report_id: str


class RenderReportFlakily(DomainEventHandler):
    """Fails its first ``failures`` calls, then succeeds; remembers when each call ran."""

    def __init__(self, failures: int) -> None:
        self._failures = failures
        self.attempted_at: list[datetime] = []
        self.rendered: list[str] = []

    def handle(self, event: ReportRequested) -> None:
        self.attempted_at.append(datetime.now(UTC))
        if len(self.attempted_at) <= self._failures:
            raise TimeoutError(f"renderer busy (attempt {len(self.attempted_at)})")
        self.rendered.append(event.report_id)


def _log_row(context: BoundedContext) -> object:
    with context.engine.connect() as connection:
        return connection.execute(select(publication_log)).one()


def test_a_handler_failing_twice_then_succeeding_completes_exactly_once_with_growing_delays(
    database_url: str, make_context: ContextFactory
) -> None:
    context = make_context(database_url, name="reports", after_commit_retry=POLICY)
    handler = context.subscribe(RenderReportFlakily(failures=2), after_commit=True)

    with context.transaction():
        context.domain_events.publish(ReportRequested(report_id="r-1"))

    # The first attempt ran right after commit and failed: recorded, not lost.
    delays: list[timedelta] = []
    row = _log_row(context)
    assert (row.attempts, row.completed_at) == (1, None)  # type: ignore[attr-defined]
    assert row.last_error == "TimeoutError: renderer busy (attempt 1)"  # type: ignore[attr-defined]
    delays.append(row.next_attempt_at - handler.attempted_at[-1])  # type: ignore[attr-defined]

    completed = 0
    for _ in range(500):
        attempts_before = len(handler.attempted_at)
        completed += context.complete_pending_handlers()
        if completed:
            break
        if len(handler.attempted_at) > attempts_before:
            row = _log_row(context)
            delays.append(row.next_attempt_at - handler.attempted_at[-1])  # type: ignore[attr-defined]
        # Nothing to await: the work becomes due when its backoff delay has passed.
        time.sleep(0.005)

    assert completed == 1
    assert handler.rendered == ["r-1"]
    assert len(handler.attempted_at) == 3
    row = _log_row(context)
    assert row.attempts == 3  # type: ignore[attr-defined]
    assert row.completed_at is not None  # type: ignore[attr-defined]
    assert row.last_error is None  # type: ignore[attr-defined]
    assert context.pending_handler_count() == 0
    assert context.complete_pending_handlers() == 0
    assert handler.rendered == ["r-1"]

    first, second = delays
    assert first >= timedelta(seconds=POLICY.delay(1))
    assert second >= timedelta(seconds=POLICY.delay(2))
    assert second > first
    # Each retry waited for its delay.
    assert handler.attempted_at[1] - handler.attempted_at[0] >= timedelta(seconds=POLICY.delay(1))
    assert handler.attempted_at[2] - handler.attempted_at[1] >= timedelta(seconds=POLICY.delay(2))


def test_work_that_is_not_due_yet_is_left_alone(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    slow_policy = RetryPolicy(initial_delay=60, max_delay=60)
    context = make_context(sqlite_url, name="reports", after_commit_retry=slow_policy)
    handler = context.subscribe(RenderReportFlakily(failures=1), after_commit=True)

    with context.transaction():
        context.domain_events.publish(ReportRequested(report_id="r-1"))

    assert context.complete_pending_handlers() == 0
    assert len(handler.attempted_at) == 1
    assert context.pending_handler_count() == 1


def test_after_commit_work_gives_up_after_max_attempts_and_stays_pending_for_an_operator(
    sqlite_url: str, make_context: ContextFactory
) -> None:
    policy = RetryPolicy(initial_delay=0.0, max_delay=0.0, max_attempts=2)
    context = make_context(sqlite_url, name="reports", after_commit_retry=policy)
    handler = context.subscribe(RenderReportFlakily(failures=5), after_commit=True)

    with context.transaction():
        context.domain_events.publish(ReportRequested(report_id="r-1"))
    context.complete_pending_handlers()
    context.complete_pending_handlers()

    assert len(handler.attempted_at) == 2
    assert context.pending_handler_count() == 1
    row = _log_row(context)
    assert row.attempts == 2  # type: ignore[attr-defined]
    assert row.next_attempt_at > datetime.now(UTC) + timedelta(days=365)  # type: ignore[attr-defined]
