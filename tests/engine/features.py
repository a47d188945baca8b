"""Device descriptions the speed-plan tests plan for (no such card needs to be present)."""

from __future__ import annotations

from fluxbot.engine.speed import DeviceFeatures

HOPPER = DeviceFeatures("cuda", (9, 0), triton=True, cudnn_attention=True, fp8_matmul=True)
AMPERE = DeviceFeatures("cuda", (8, 0), triton=True, cudnn_attention=True, fp8_matmul=False)
CPU = DeviceFeatures("cpu")
