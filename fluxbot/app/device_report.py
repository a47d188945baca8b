"""The device report: every discovered device's status, whether FLUXBOT_GPUS selects it and the
memory profile placement would give it; for `fluxbot gpus` (a table) and the admins' /gpu."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from fluxbot.devices.backends import DeviceBackend, TorchBackend
from fluxbot.devices.discovery import DeviceInfo, select_devices
from fluxbot.devices.nvml import NvmlMonitor
from fluxbot.devices.status import GpuStatus, device_status
from fluxbot.engine.placement import (
    ProfileError,
    needs_placement,
    plan_placement,
    unplanned_reason,
)

if TYPE_CHECKING:
    from fluxbot.config import Settings

log = logging.getLogger(__name__)

GIB = 1024**3

Number = TypeVar("Number", int, float)


def live_statuses(devices: Sequence[DeviceInfo], monitor: NvmlMonitor) -> dict[str, GpuStatus]:
    """Each device's status now, by torch device name, through a long-lived NVML monitor (the
    bot's); blocking (NVML and torch calls), so call it off the event loop."""
    if not monitor.available:
        monitor.start()
    return {info.torch_device: device_status(info, monitor) for info in devices}


def gpu_report(
    settings: Settings,
    devices: Sequence[DeviceInfo],
    backend: DeviceBackend | None = None,
    nvml: Any | None = None,
) -> list[GpuStatus]:
    """Every discovered device's status, marked with whether FLUXBOT_GPUS selects it and the
    memory profile FLUXBOT_MEMORY_PROFILE would give it (for `fluxbot gpus`): what `run` would
    do with these settings. A wrong FLUXBOT_GPUS raises `DeviceSelectionError`, as in `run`."""
    backend = backend or TorchBackend()
    selected = select_devices(settings.gpus, devices)
    with NvmlMonitor(nvml) as monitor:
        statuses = [device_status(info, monitor, backend) for info in devices]
    chosen = {info.torch_device for info in selected}
    if not needs_placement(settings.model, selected):
        reason = unplanned_reason(settings.model)
        return [
            replace(
                status,
                selected=status.device in chosen,
                profile="full" if status.device in chosen else None,
                profile_reason=reason if status.device in chosen else None,
            )
            for status in statuses
        ]
    free = {
        info.torch_device: _free_bytes(info, status)
        for info, status in zip(devices, statuses, strict=True)
    }
    ram = backend.ram()
    roles: dict[str, tuple[str, str]] = {}
    try:
        placement = plan_placement(
            settings.memory_profile,
            [(info, free[info.torch_device]) for info in selected],
            ram[0] if ram else 0,
        )
    except ProfileError as exc:
        roles = {info.torch_device: ("refused", str(exc)) for info in selected}
    else:
        for plan in placement.replicas:
            for device in dict.fromkeys(plan.devices.values()):
                role = str(plan.profile)
                if plan.is_split:
                    part = "transformer" if device == plan.primary else "text encoders"
                    role = f"{plan.profile} ({part})"
                roles[device] = (role, plan.reason)
        for unused in placement.unused:
            roles[unused.device] = ("unused", unused.reason)
    return [
        replace(
            status,
            selected=status.device in chosen,
            profile=roles.get(status.device, (None, None))[0],
            profile_reason=roles.get(status.device, (None, None))[1],
        )
        for status in statuses
    ]


def _free_bytes(info: DeviceInfo, status: GpuStatus) -> int:
    if status.memory_used is None or status.memory_total is None:
        return info.total_memory  # unknown: assume an idle card
    return status.memory_total - status.memory_used


def format_device_table(statuses: Sequence[GpuStatus]) -> str:
    """A plain-text table of device statuses for `fluxbot gpus`; '-' where a field is unknown.

    '*' marks the devices FLUXBOT_GPUS selects; why each got its profile follows the table.
    """
    header = (
        "",
        "DEVICE",
        "NAME",
        "MEMORY USED/TOTAL",
        "UTIL",
        "TEMP",
        "POWER",
        "SM/MEM CLOCK",
        "PROFILE",
    )
    rows = [header, *(_row(s) for s in statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    reasons = dict.fromkeys(s.profile_reason for s in statuses if s.profile_reason)
    return "\n".join([*(line.rstrip() for line in lines), *(f"  {r}" for r in reasons)])


def _row(status: GpuStatus) -> tuple[str, ...]:
    return (
        "*" if status.selected else "",
        status.device,
        status.name,
        _pair(status.memory_used, status.memory_total, lambda b: f"{b / GIB:.1f}", " GiB"),
        "-" if status.utilization is None else f"{status.utilization}%",
        "-" if status.temperature_c is None else f"{status.temperature_c} C",
        _pair(status.power_w, status.power_limit_w, lambda w: f"{w:.0f}", " W"),
        _pair(status.sm_clock_mhz, status.memory_clock_mhz, str, " MHz"),
        status.profile or "-",
    )


def _pair(
    first: Number | None, second: Number | None, fmt: Callable[[Number], str], unit: str
) -> str:
    if first is None and second is None:
        return "-"
    left = "-" if first is None else fmt(first)
    right = "-" if second is None else fmt(second)
    return f"{left} / {right}{unit}"
