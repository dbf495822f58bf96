"""Showing a causal tree: a rich tree for people, JSON (nodes and edges), Mermaid."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from tidings.causality.records import Outcome
from tidings.causality.tree import EventNode, Handling, Status, Trace

# The status as documented and as --json gives it (complete, in_progress, dead_lettered).
_STATUS_STYLE = {
    Status.COMPLETE: f"[green]{Status.COMPLETE.value}[/]",
    Status.IN_PROGRESS: f"[yellow]{Status.IN_PROGRESS.value}[/]",
    Status.DEAD_LETTERED: f"[red]{Status.DEAD_LETTERED.value}[/]",
}


def status_markup(trace: Trace) -> str:
    """The trace's status, coloured for the console."""
    return _STATUS_STYLE[trace.status]


def as_tree(trace: Trace) -> Tree:
    """The causal tree as a rich Tree: use case → events → handlings → events..."""
    events = trace.walk()
    root = Tree(
        f"[bold]use case[/] {escape(str(trace.correlation_id))} "
        f"in {escape(trace.origin or '?')} at {_time(trace.started_at)}: "
        f"{len(events)} event{'' if len(events) == 1 else 's'}, {status_markup(trace)}"
    )
    for event in trace.events:
        _add_event(root, event, trace)
    for event in trace.orphans:
        _add_event(root, event, trace, note=" [red](cause not recorded)[/]")
    return root


def _add_event(parent: Tree, event: EventNode, trace: Trace, note: str = "") -> None:
    version = "" if event.event_version is None else f" v{event.event_version}"
    if event.pending:
        when = f"[yellow]waits in the outbox since {_ago(event.created_at, trace.now)}[/]" + (
            f" ({event.attempts} failed attempts)" if event.attempts else ""
        )
    elif not event.recorded_by_producer:
        when = "[dim]not recorded by its producer[/]"
    else:
        relayed = _seconds(event.created_at, event.published_at)
        when = f"at {_time(event.created_at)}, relayed in {_duration(relayed)}"
    node = parent.add(
        f"[cyan]{escape(event.context)}[/] published [bold]{escape(event.event_type)}[/]"
        f"{version} [dim]{escape(event.event_id)}[/] {when}{note}"
    )
    if not event.handlings and not event.pending:
        node.add("[dim]no subscriber among these contexts[/]")
    for handling in event.handlings:
        branch = node.add(_handling_line(event, handling, trace))
        for child in handling.published:
            _add_event(branch, child, trace)


def _handling_line(event: EventNode, handling: Handling, trace: Trace) -> str:
    who = f"[cyan]{escape(handling.context)}[/]"
    duplicates = (
        f" [dim](+{handling.duplicates} duplicates skipped)[/]" if handling.duplicates else ""
    )
    if handling.outcome == Outcome.HANDLED:
        return (
            f"{who} [green]handled[/] at {_time(handling.handled_at)}, "
            f"{_duration(handling.latency_s)} after publishing{duplicates}"
        )
    if handling.outcome == Outcome.DEAD_LETTERED:
        detail = f" ({escape(handling.detail)})" if handling.detail else ""
        return (
            f"[red]dead-lettered in {escape(handling.context)}: {escape(str(handling.reason))}[/]"
            f" at {_time(handling.handled_at)}{detail}"
        )
    if handling.outcome == Outcome.DUPLICATE:
        return f"{who} [yellow]received only duplicates[/]{duplicates}"
    if event.pending:
        return f"[yellow]not yet sent to {escape(handling.context)}[/]"
    return (
        f"[yellow]published {_ago(event.published_at, trace.now)}, not yet handled by "
        f"{escape(handling.context)}[/]"
    )


def as_mermaid(trace: Trace) -> str:
    """The trace as a Mermaid sequence diagram: one participant per context."""
    events = trace.walk()
    participants: list[str] = []
    for event in events:
        for name in [event.context, *(h.context for h in event.handlings)]:
            if name not in participants:
                participants.append(name)
    lines = ["sequenceDiagram"]
    lines += [f"    participant {_mermaid_id(name)} as {name}" for name in participants]
    if participants:
        lines.append(
            f"    Note over {_mermaid_id(trace.origin or participants[0])}: use case "
            f"{trace.correlation_id} ({trace.status.value})"
        )
    for event in sorted(events, key=lambda e: e.published_at or e.created_at or trace.now):
        source = _mermaid_id(event.context)
        if not event.handlings:
            state = "pending in outbox" if event.pending else "no subscriber"
            lines.append(f"    Note right of {source}: {event.event_type} ({state})")
        for handling in event.handlings:
            target = _mermaid_id(handling.context)
            if handling.outcome == Outcome.HANDLED:
                lines.append(
                    f"    {source}->>{target}: {event.event_type} "
                    f"(handled in {_duration(handling.latency_s)})"
                )
            elif handling.outcome == Outcome.DEAD_LETTERED:
                lines.append(
                    f"    {source}-x{target}: {event.event_type} (dead-lettered: {handling.reason})"
                )
            else:
                state = "pending in outbox" if event.pending else "not yet handled"
                lines.append(f"    {source}--){target}: {event.event_type} ({state})")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _time(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _ago(moment: datetime | None, now: datetime) -> str:
    return "?" if moment is None else f"{_duration((now - moment).total_seconds())} ago"


def as_json(trace: Trace) -> dict[str, Any]:
    """The documented JSON shape: ``nodes`` and ``edges`` (see docs/trace.md)."""
    use_case = f"use_case:{trace.correlation_id}"
    nodes: list[dict[str, Any]] = [
        {
            "id": use_case,
            "kind": "use_case",
            "correlation_id": trace.correlation_id,
            "context": trace.origin,
            "started_at": _iso(trace.started_at),
            "status": trace.status.value,
        }
    ]
    edges: list[dict[str, str]] = []
    for event in trace.walk():
        nodes.append(
            {
                "id": event.node_id,
                "kind": "event",
                "event_id": event.event_id,
                "context": event.context,
                "type": event.event_type,
                "version": event.event_version,
                "created_at": _iso(event.created_at),
                "published_at": _iso(event.published_at),
                "status": "pending" if event.pending else "published",
                "recorded_by_producer": event.recorded_by_producer,
            }
        )
        for handling in event.handlings:
            nodes.append(
                {
                    "id": handling.node_id,
                    "kind": "handling",
                    "event_id": event.event_id,
                    "context": handling.context,
                    "outcome": handling.outcome or "not_handled",
                    "received_at": _iso(handling.received_at),
                    "handled_at": _iso(handling.handled_at),
                    "latency_s": handling.latency_s,
                    "reason": handling.reason,
                    "detail": handling.detail,
                    "duplicates": handling.duplicates,
                }
            )
            edges.append({"from": event.node_id, "to": handling.node_id, "kind": "delivered"})
            for child in handling.published:
                edges.append({"from": handling.node_id, "to": child.node_id, "kind": "published"})
    for event in trace.events:
        edges.append({"from": use_case, "to": event.node_id, "kind": "published"})
    for event in trace.orphans:
        edges.append({"from": use_case, "to": event.node_id, "kind": "cause_unknown"})
    return {
        "correlation_id": trace.correlation_id,
        "status": trace.status.value,
        "gaps": trace.gaps,
        "nodes": nodes,
        "edges": edges,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def summary(trace: Trace) -> dict[str, Any]:
    """One line of ``tidings trace --last``: id, origin, start, size, status, gaps."""
    return {
        "correlation_id": trace.correlation_id,
        "context": trace.origin,
        "started_at": _iso(trace.started_at),
        "events": len(trace.walk()),
        "status": trace.status.value,
        "gaps": trace.gaps,
    }
