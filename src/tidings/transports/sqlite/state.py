"""What a consumer of the SQLite broker keeps in memory, owned by the event loop:
its partitions, their buffered rows and the deliveries not acknowledged yet."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from dataclasses import dataclass, field

logger = logging.getLogger("tidings.transports.sqlite")


@dataclass(slots=True, eq=False)
class Token:
    """One delivery of one offset; ``live`` turns False when a rewind or a lost lease voids it."""

    state: PartitionState
    offset: int
    acked: bool = False
    live: bool = True


@dataclass(slots=True, eq=False)
class PartitionState:
    """One partition a consumer holds: how far it read, what it buffered and delivered."""

    number: int
    committed: int  # as last written to the file
    scanned: int  # highest offset read: delivered, buffered or skipped
    suspect_upto: int = 0  # offsets up to here may have been delivered before
    epoch: int = 0  # bumped whenever buffered reads become stale
    draining: bool = False
    buffer: deque[tuple[int, bytes, str]] = field(default_factory=deque)
    pending: deque[Token] = field(default_factory=deque)

    def commit_target(self) -> int:
        """The offset below which every row was acknowledged or skipped."""
        pending = self.pending
        while pending and pending[0].acked:
            pending.popleft()
        if pending:
            return pending[0].offset - 1
        if self.buffer:
            return self.buffer[0][0] - 1
        return self.scanned

    def unacked(self) -> bool:
        return any(not token.acked for token in self.pending)

    def drop_buffer(self) -> None:
        if self.buffer:
            self.scanned = self.buffer[0][0] - 1
            self.buffer.clear()
        self.epoch += 1


class ConsumerState:
    """One consumer of a group: its partitions and the order it delivers from them."""

    def __init__(self, group: str, event_types: frozenset[str]) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.group = group
        self.event_types = event_types
        self.partitions: dict[int, PartitionState] = {}
        self.ready: deque[int] = deque()
        self.wake = asyncio.Event()
        self.needs_fetch = True
        # The file's change counter at the last look, the newest log offset it showed,
        # and (newest offset, this process's publishes) at the last fetch.
        self.seen_counter: int | None = None
        self.seen_newest: int | None = None
        self.seen_version: tuple[int | None, int] = (-1, -1)
        self.hurry = False
        self.retired = False
        self.failure: BaseException | None = None
        self.heartbeat: asyncio.Task[None] | None = None

    def next_delivery(self) -> tuple[Token, bytes, str, bool] | None:
        while self.ready:
            number = self.ready.popleft()
            state = self.partitions.get(number)
            if state is None or state.draining or not state.buffer:
                continue
            offset, body, routed = state.buffer.popleft()
            if state.buffer:
                self.ready.append(number)
            token = Token(state, offset)
            state.pending.append(token)
            return token, body, routed, offset <= state.suspect_upto
        return None

    def commits(self) -> dict[int, int]:
        targets: dict[int, int] = {}
        for number, state in self.partitions.items():
            target = state.commit_target()
            if target > state.committed:
                targets[number] = target
        return targets

    def applied_commits(self, commits: dict[int, int]) -> None:
        for number, target in commits.items():
            state = self.partitions.get(number)
            if state is not None:
                state.committed = max(state.committed, target)

    def lose(self, number: int) -> None:
        state = self.partitions.pop(number, None)
        if state is not None:
            for token in state.pending:
                token.live = False
            logger.warning(
                "consumer %s of group %r lost partition %d (its lease expired); "
                "its unacknowledged deliveries will be redelivered to the new holder",
                self.id,
                self.group,
                number,
            )

    def rewind(self, token: Token) -> None:
        state = token.state
        if token.acked or not token.live or self.partitions.get(state.number) is not state:
            return  # already settled, or voided by an earlier rewind or a lost lease
        if token not in state.pending:
            return
        # the last pending token is the newest delivery: up to it, rows come again
        state.suspect_upto = max(state.suspect_upto, state.pending[-1].offset)
        while state.pending:
            later = state.pending.pop()
            later.live = False
            if later is token:
                break
        state.buffer.clear()
        state.scanned = token.offset - 1
        state.epoch += 1
        self.needs_fetch = True
        self.wake.set()


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """What one heartbeat found: the partitions held, those just claimed, the fair share."""

    owned: frozenset[int]
    claimed: dict[int, tuple[int, int]]  # partition -> (committed, suspect_upto)
    share: int
    committed: bool
