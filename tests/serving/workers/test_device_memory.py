"""DeviceMemory: the memory policy as a worker's `MemoryHooks`, on the real CPU device."""

from __future__ import annotations

import torch

from fluxbot.serving.workers.device_memory import DeviceMemory
from tests.fakes_runner import request


def test_device_memory_uses_the_memory_policy_on_cpu() -> None:
    memory = DeviceMemory("cpu")
    assert isinstance(memory.should_clean(0), bool)
    assert memory.should_clean(10_000), "the every-n-jobs safety net"
    assert memory.cleanup() >= 0
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not memory.is_out_of_memory(ValueError("bad prompt"))
    lighter = memory.lighter([request(count=2)])
    assert lighter.vae_tiling and lighter.split_batch
