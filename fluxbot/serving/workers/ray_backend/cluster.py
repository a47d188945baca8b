"""Joining the Ray cluster and placing one replica actor per GPU of every host."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from fluxbot.config import ConfigError
from fluxbot.serving.workers.base import Worker, describe_error
from fluxbot.serving.workers.ray_backend.actor import ReplicaActor, ReplicaConfig
from fluxbot.serving.workers.ray_backend.worker import RayWorker

if TYPE_CHECKING:
    from fluxbot.config import Settings

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install -e ".[ray]"'
RAY_NAMESPACE = "fluxbot"
PROBE_TIMEOUT_S = 5.0


class RayBackendError(ConfigError):
    """The Ray backend cannot start (no ray, no cluster, no GPU); one line for the operator."""


@dataclass(frozen=True, slots=True)
class ReplicaSlot:
    """One GPU of one node: where an actor goes, and the name the bot shows for it."""

    node_id: str
    node_ip: str
    index: int
    label: str


def plan_slots(nodes: Sequence[dict[str, Any]]) -> list[ReplicaSlot]:
    """One slot per GPU of every live node, interleaved across nodes (host A's first GPU, host
    B's first, then the second ones), so ties in the scheduler spread work over the hosts."""
    per_node: list[list[ReplicaSlot]] = []
    seen_ips: set[str] = set()
    for node in nodes:
        gpus = int(node.get("Resources", {}).get("GPU", 0))
        if not node.get("Alive", False) or gpus <= 0:
            continue
        ip = str(node.get("NodeManagerAddress", "?"))
        node_id = str(node["NodeID"])
        host = ip if ip not in seen_ips else f"{ip}~{node_id[:6]}"
        seen_ips.add(ip)
        per_node.append([ReplicaSlot(node_id, ip, k, f"ray:{host}/gpu{k}") for k in range(gpus)])
    longest = max((len(slots) for slots in per_node), default=0)
    return [slots[k] for k in range(longest) for slots in per_node if k < len(slots)]


def import_ray() -> Any:
    """ray, or a `RayBackendError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayBackendError(
            "FLUXBOT_BACKEND=ray needs Ray, which is not installed: run "
            f"`{RAY_INSTALL_HINT}` (same Python and Ray versions on every host)"
        ) from None
    return ray


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast on an explicit 'HOST:PORT' nobody answers on: `ray.init` itself retries an
    unreachable address for minutes. ('auto' finds the cluster this host belongs to.)"""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayBackendError(
            f"cannot reach the Ray cluster at FLUXBOT_RAY_ADDRESS={address!r} "
            f"({describe_error(exc)}); is the head up (`ray start --head`), and the port open?"
        ) from None


def connect(address: str) -> None:
    """Join the cluster at `address` ('auto', or 'HEAD:6379' when this host is a node), once.

    The bot's host must be a node of the cluster (the head, ideally): Ray Client (`ray://`)
    does not support the streaming generators that carry progress back.
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    if address.startswith("ray://"):
        raise RayBackendError(
            f"FLUXBOT_RAY_ADDRESS={address!r} is not supported: Ray Client (ray://) cannot carry "
            "the streamed progress fluxbot uses; run the bot on the head node (address 'auto') "
            "or join its host to the cluster (`ray start --address=HEAD:6379`)"
        )
    probe(address)
    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, log_to_driver=True)
    except Exception as exc:
        raise RayBackendError(
            f"cannot reach the Ray cluster at FLUXBOT_RAY_ADDRESS={address!r} "
            f"({describe_error(exc)}); start it first with `ray start --head` on this host"
        ) from None


def spawn_replica(actor_class: Any, config: ReplicaConfig, slot: ReplicaSlot) -> Any:
    """Create one replica actor on `slot`'s node (soft: a restart may move to a free GPU)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return actor_class.options(
        num_gpus=1,
        max_restarts=-1,
        max_task_retries=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=True),
    ).remote(config)


def build_ray_workers(settings: Settings, *, device: str = "auto") -> list[Worker]:
    """Connect to the cluster and start one replica actor per GPU on every host.

    Actors start loading at once; `RayWorker.wait_ready` waits for them. Raises
    `RayBackendError` when ray is missing, the cluster is unreachable or has no GPU.
    """
    ray = import_ray()
    connect(settings.ray_address)
    slots = plan_slots(ray.nodes())
    if not slots:
        raise RayBackendError(
            f"the Ray cluster at FLUXBOT_RAY_ADDRESS={settings.ray_address!r} has no GPU: "
            "join GPU hosts with `ray start --address=HEAD:6379`"
        )
    actor_class = ray.remote(ReplicaActor)
    workers: list[Worker] = []
    for slot in slots:
        config = ReplicaConfig.from_settings(settings, slot.label, device)
        spawn = partial(spawn_replica, actor_class, config, slot)
        workers.append(RayWorker(slot.label, spawn, actor=spawn()))
    hosts = {slot.node_id for slot in slots}
    log.info("Ray backend: %d GPU worker(s) on %d host(s)", len(workers), len(hosts))
    return workers
