"""After ``tidings demo --folder DIR``, ``tidings trace`` over the demo's contexts recovers
every use case of the run: every integration event each context published and every
handling each context recorded, checked against the databases themselves (outbox,
inbox and causal record tables), with no link missing and none invented.

Then a poison message published into the demo's broker, dead-lettered by notifications,
shows in its trace as dead-lettered with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select

from tests.acceptance.test_demo import assert_converged, run_demo
from tidings.demo.environment import CONTEXTS, configure
from tidings.persistence.tables import handled_records, inbox, outbox, published_records

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "examples.ecommerce.system"


def _tidings(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _database(folder: Path) -> dict[str, dict[str, set[tuple[str, ...]]]]:
    """What each context's database holds, read directly."""
    held: dict[str, dict[str, set[tuple[str, ...]]]] = {}
    for name in CONTEXTS:
        engine = create_engine(f"sqlite:///{folder / name}.db")
        with engine.connect() as connection:
            held[name] = {
                "published": {
                    (event_id, trigger or "")
                    for event_id, trigger in connection.execute(
                        select(published_records.c.event_id, published_records.c.trigger_id)
                    )
                },
                "pending": {(e,) for e in connection.execute(select(outbox.c.event_id)).scalars()},
                "inbox": {(e,) for e in connection.execute(select(inbox.c.event_id)).scalars()},
                "handled": {
                    (event_id, outcome)
                    for event_id, outcome in connection.execute(
                        select(handled_records.c.event_id, handled_records.c.outcome)
                    )
                },
                "correlations": set(
                    (c,)
                    for c in connection.execute(
                        select(published_records.c.correlation_id)
                    ).scalars()
                ),
            }
        engine.dispose()
    return held


def test_tidings_trace_recovers_every_use_case_of_a_demo_run(tmp_path: Path) -> None:
    assert_converged(run_demo(folder=tmp_path))
    page = (tmp_path / "event-flow.html").read_text()  # the demo draws the map too
    assert "<svg" in page and "ordering.order.confirmed" in page
    assert (tmp_path / "event-flow.mmd").read_text().startswith("flowchart LR")
    saved = dict(os.environ)
    try:
        env = {**saved, **configure(tmp_path, database=None, broker=None), "COLUMNS": "200"}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    held = _database(tmp_path)
    correlations = sorted({c for name in CONTEXTS for (c,) in held[name]["correlations"]})
    assert correlations

    listed = json.loads(_tidings(env, "tidings", "trace", SYSTEM, "--last", "100000", "--json"))
    assert sorted(line["correlation_id"] for line in listed) == correlations
    assert {line["status"] for line in listed} == {"complete"}

    documents = json.loads(_tidings(env, "tests.support.trace_cli", SYSTEM, *correlations))
    traced_events: dict[str, str] = {}  # event id -> publishing context
    traced_handlings: set[tuple[str, str]] = set()
    parents: dict[str, str] = {}  # event node -> the handling node that published it
    for document in documents:
        assert document["status"] == "complete" and document["gaps"] == []
        nodes = {node["id"]: node for node in document["nodes"]}
        for edge in document["edges"]:
            assert edge["from"] in nodes and edge["to"] in nodes
            if edge["kind"] == "published" and edge["from"].startswith("handling:"):
                parents[edge["to"]] = edge["from"]
        for node in nodes.values():
            if node["kind"] == "event":
                assert node["event_id"] not in traced_events, "an event in two traces"
                traced_events[node["event_id"]] = node["context"]
            elif node["kind"] == "handling":
                assert node["outcome"] == "handled"
                traced_handlings.add((node["context"], node["event_id"]))

    recorded_events = {
        event_id: name for name in CONTEXTS for (event_id, _) in held[name]["published"]
    }
    assert not any(held[name]["pending"] for name in CONTEXTS)
    assert traced_events == recorded_events  # 0 missing, 0 invented
    inboxes = {(name, event_id) for name in CONTEXTS for (event_id,) in held[name]["inbox"]}
    handled = {
        (name, event_id)
        for name in CONTEXTS
        for (event_id, outcome) in held[name]["handled"]
        if outcome == "handled"
    }
    assert traced_handlings == inboxes == handled
    # Every link from a handling to what it published is the one the database recorded.
    triggers = {event_id: t for name in CONTEXTS for (event_id, t) in held[name]["published"]}
    for event_node, handling_node in parents.items():
        _, context, cause = handling_node.split(":", 2)
        event_id = event_node.removeprefix("event:")
        assert triggers[event_id] == cause and recorded_events[event_id] == context
    consumer_published = {e for e, t in triggers.items() if t}
    assert consumer_published and consumer_published == {e.removeprefix("event:") for e in parents}

    # Each order's use case holds its own payment: what payments published while
    # handling one event of a micro-batch carries that event's flow, not the batch's.
    for document in documents:
        types = [n["type"] for n in document["nodes"] if n["kind"] == "event"]
        if "ordering.order.confirmed" in types:
            assert types.count("ordering.order.confirmed") == 1
            assert types.count("payments.payment.completed") == 1

    # People's and diagram forms of one order's use case.
    order = next(
        d for d in documents if any(n.get("type") == "ordering.order.confirmed" for n in d["nodes"])
    )
    tree = _tidings(env, "tidings", "trace", SYSTEM, "--id", order["correlation_id"])
    assert "ordering.order.confirmed" in tree and "payments handled" in tree
    mermaid = _tidings(
        env, "tidings", "trace", SYSTEM, "--id", order["correlation_id"], "--format", "mermaid"
    )
    assert mermaid.startswith("sequenceDiagram") and "ordering->>payments" in mermaid

    # A poison message in the demo's broker: notifications dead-letters it, the trace says so.
    poison_id = _tidings(env, "tests.support.demo_poison", "poison-use-case").strip()
    poisoned = json.loads(
        _tidings(env, "tidings", "trace", SYSTEM, "--id", "poison-use-case", "--json")
    )
    assert poisoned["status"] == "dead_lettered"
    nodes = {node["id"]: node for node in poisoned["nodes"]}
    assert nodes[f"event:{poison_id}"]["recorded_by_producer"] is False
    dead = nodes[f"handling:notifications:{poison_id}"]
    assert (dead["outcome"], dead["reason"]) == ("dead_lettered", "invalid_payload")
    assert "dead-lettered in notifications: invalid_payload" in " ".join(poisoned["gaps"])
    shown = _tidings(env, "tidings", "trace", SYSTEM, "--id", poison_id)
    assert "dead-lettered in notifications: invalid_payload" in shown
