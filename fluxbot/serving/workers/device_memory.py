"""`MemoryHooks` on a real device, adapting fluxbot.devices.memory to what a worker asks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fluxbot.core.requests import GenerationRequest

if TYPE_CHECKING:
    from fluxbot.config import Settings
    from fluxbot.devices.memory import CleanupPolicy, LighterSettings


class DeviceMemory:
    """`MemoryHooks` on a real device: fluxbot.devices.memory's snapshot, policy, cleanup."""

    def __init__(self, torch_device: str, policy: CleanupPolicy | None = None) -> None:
        from fluxbot.devices.memory import CleanupPolicy

        self.torch_device = torch_device
        self.policy = policy or CleanupPolicy()

    @classmethod
    def from_settings(cls, settings: Settings, torch_device: str) -> DeviceMemory:
        from fluxbot.devices.memory import CleanupPolicy, MemoryThresholds

        return cls(torch_device, CleanupPolicy(MemoryThresholds.from_settings(settings)))

    def should_clean(self, jobs_since_clean: int) -> bool:
        from fluxbot.devices.memory import take_snapshot

        return self.policy.should_clean(take_snapshot(self.torch_device), jobs_since_clean)

    def cleanup(self) -> float:
        from fluxbot.devices.memory import cleanup

        return cleanup(self.torch_device)

    def is_out_of_memory(self, exc: BaseException) -> bool:
        from fluxbot.devices.memory import is_out_of_memory

        return is_out_of_memory(exc)

    def lighter(self, requests: Sequence[GenerationRequest]) -> LighterSettings:
        from fluxbot.devices.memory import lighter_settings_for

        return lighter_settings_for(sum(r.image_count for r in requests))
