"""The fair queue: waiting jobs dispatched round-robin across users, not first come first served."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fluxbot.serving.job import Job


@dataclass(slots=True)
class _Queued:
    job: Job
    round: int
    seq: int


class FairQueue:
    """Waiting jobs in round-robin order across users; `priority_front` jobs come first, once.

    Each job carries the round in which its user's turn comes: a user's n-th waiting job is in
    round n after the current one, and a newcomer joins the next round (no credit for idle
    time). Dispatch order is (round, arrival). Explicit rounds keep the order stable when
    batching takes a job early: the user has used that turn, so the rest do not move up.
    A cancel does move the user's later jobs up a round, as their turns are free again.
    """

    def __init__(self) -> None:
        self._front: deque[Job] = deque()
        self._waiting: dict[str, _Queued] = {}
        self._last_round: dict[int, int] = {}
        self._round = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._front) + len(self._waiting)

    def count_for(self, user_id: int) -> int:
        front = sum(1 for job in self._front if job.user_id == user_id)
        return front + sum(1 for q in self._waiting.values() if q.job.user_id == user_id)

    def push(self, job: Job) -> None:
        if job.priority_front:
            self._front.append(job)
            return
        user_round = max(self._round, self._last_round.get(job.user_id, 0)) + 1
        self._last_round[job.user_id] = user_round
        self._seq += 1
        self._waiting[job.job_id] = _Queued(job, user_round, self._seq)

    def pop_next(self) -> Job | None:
        """The next job in dispatch order."""
        if self._front:
            return self._front.popleft()
        if not self._waiting:
            return None
        first = min(self._waiting.values(), key=lambda q: (q.round, q.seq))
        del self._waiting[first.job.job_id]
        self._round = max(self._round, first.round)
        return first.job

    def order(self) -> list[Job]:
        """All waiting jobs in the order they would be dispatched if nothing else arrived."""
        rest = sorted(self._waiting.values(), key=lambda q: (q.round, q.seq))
        return [*self._front, *(q.job for q in rest)]

    def take(self, job_id: str) -> Job:
        """Take a job out of turn (into a batch); its user's other jobs keep their rounds."""
        for job in self._front:
            if job.job_id == job_id:
                self._front.remove(job)
                return job
        return self._waiting.pop(job_id).job

    def remove(self, job_id: str) -> Job | None:
        """Cancel a waiting job: the user's later jobs move up one round."""
        for job in self._front:
            if job.job_id == job_id:
                self._front.remove(job)
                return job
        gone = self._waiting.pop(job_id, None)
        if gone is None:
            return None
        user_id = gone.job.user_id
        for queued in self._waiting.values():
            if queued.job.user_id == user_id and queued.round > gone.round:
                queued.round -= 1
        self._last_round[user_id] -= 1
        return gone.job

    def drain(self) -> list[Job]:
        """Empty the queue; returns its jobs in dispatch order."""
        ordered = self.order()
        self._front.clear()
        self._waiting.clear()
        return ordered
