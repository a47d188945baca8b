"""Workers on other hosts through Ray Core: one actor per GPU of the cluster, behind `Worker`.

Only this package imports ray, and only when the Ray backend is chosen, so single-host installs
never need it. Each actor (`ReplicaActor`) runs a `LocalWorker` on its GPU, so a remote device
behaves exactly like a local one: same OOM retry, failure isolation, time limit, memory cleanup
and PNG encoding, with the same outcomes and messages. The bot-side `RayWorker` streams each
batch's progress back (a Ray streaming generator), forwards cancels to the actor's pipeline
interrupt, and turns a lost actor or node into `WorkerUnavailable`, so the scheduler puts the
batch back at the front of the queue once; the worker rejoins when its actor is ready again.
Fairness, caps, positions and ETAs stay in the bot's scheduler: Ray only carries the calls.
"""

from fluxbot.serving.workers.ray_backend.actor import (
    DeviceFree,
    ReplicaActor,
    ReplicaConfig,
    ReplicaInfo,
)
from fluxbot.serving.workers.ray_backend.cluster import (
    RayBackendError,
    ReplicaSlot,
    build_ray_workers,
    connect,
    import_ray,
    plan_slots,
    spawn_replica,
)
from fluxbot.serving.workers.ray_backend.worker import RayWorker

__all__ = [
    "DeviceFree",
    "RayBackendError",
    "RayWorker",
    "ReplicaActor",
    "ReplicaConfig",
    "ReplicaInfo",
    "ReplicaSlot",
    "build_ray_workers",
    "connect",
    "import_ray",
    "plan_slots",
    "spawn_replica",
]
