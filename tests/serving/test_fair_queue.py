"""FairQueue: round-robin across users, recovered jobs first, cancels move a user's jobs up."""

from __future__ import annotations

from fluxbot.serving.fair_queue import FairQueue
from fluxbot.serving.job import Job
from tests.fakes_runner import job


def test_fair_queue_orders_round_robin_with_recovered_jobs_first() -> None:
    queue = FairQueue()
    for i in range(3):
        queue.push(job(f"a{i}", user_id=1))
    queue.push(job("b0", user_id=2))
    queue.push(job("c0", user_id=3))
    queue.push(Job("r0", 2, job("r0").request, priority_front=True))
    assert [j.job_id for j in queue.order()] == ["r0", "a0", "b0", "c0", "a1", "a2"]
    assert [queue.pop_next().job_id for _ in range(3)] == ["r0", "a0", "b0"]  # type: ignore[union-attr]
    queue.push(job("b1", user_id=2))  # b is at the back of the line now
    assert [j.job_id for j in queue.order()] == ["c0", "a1", "b1", "a2"]
    assert queue.remove("a1") is not None and queue.count_for(1) == 1
    assert [j.job_id for j in queue.drain()] == ["c0", "a2", "b1"] and len(queue) == 0
