"""What every guest kind shares besides its lifecycle: the settings model, and the
small readers of a guest's console log and of its own view of its devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GuestSettings(BaseModel):
    """Settings every guest kind takes (``settings = {...}`` in a campaign file)."""

    model_config = ConfigDict(extra="forbid")
    vcpus: int = Field(1, ge=1, le=512, description="virtual CPUs")
    memory_mib: int = Field(1024, ge=128, le=1 << 22, description="guest memory in MiB")
    pin: list[int] | None = Field(None, description="the host CPU of each vCPU, in order")
    disk_size: str = Field("2G", pattern=r"^\d+[MG]$",
                           description="size of the scratch disk the I/O workloads use")
    bridge: str | None = Field(None, pattern=r"^[\w.-]{1,15}$",
                               description='with network = "bridge": an existing bridge on '
                                           "the host with an IPv4 address")
    guest_address: str | None = Field(None, pattern=r"^\d+\.\d+\.\d+\.\d+/\d+$",
                                      description='with network = "bridge": the guest\'s '
                                                  'address on it, e.g. "10.0.100.2/24"')
    network: str = Field("none", description="the guest's network (each kind lists its "
                                             "choices)")
    boot_timeout: float | None = Field(None, gt=0, description="seconds from start until "
                                       "the agent answers (unset: the kind's default)")
    agent_margin: float = Field(30, gt=0, description="seconds past a command's own limit "
                                "to wait for the agent before giving up on it")
    fresh: bool = Field(False, description="boot a new guest for every trial")
    guests: int = Field(1, ge=1, le=64, description="identical guests booted together on "
                        "the host; each trial runs the workload in all of them at one "
                        "moment (consolidation: aggregate, scaling efficiency, fairness)")
    neighbours: int = Field(0, ge=0, le=63, description="guests booted beside the measured "
                            "one to run aggressors in (an interference study sets it)")


def tail(text: str, lines: int = 8) -> str:
    """The last non-empty lines of a log, on one line (for error messages)."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


#: run in the guest with the scratch device as $1: its sysfs path, the drivers bound on
#: the way from the device to the root, and eth0's driver (a fixed script: no guest
#: or config text is ever part of it)
DEVICES_SCRIPT = r"""
p=$(readlink -f "/sys/block/$1") || exit 0
echo "disk_path=$p"
while [ "$p" != /sys/devices ] && [ "$p" != / ]; do
    [ -L "$p/driver" ] && echo "disk_driver=$(basename "$(readlink "$p/driver")")"
    p=$(dirname "$p")
done
[ -L /sys/class/net/eth0/device/driver ] && \
    echo "nic_driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
exit 0
"""


def mark_boot_log(log: Path, seen: int, elapsed: float, timings: dict[str, float]) -> int:
    """Time the console's first output and the init's marker in a growing local log;
    reads only what is new (plus a marker's length). The size read so far."""
    size = log.stat().st_size if log.exists() else 0
    if size and "first_output_ms" not in timings:
        timings["first_output_ms"] = elapsed * 1000
    if size > seen and "init_ms" not in timings:
        with log.open("rb") as handle:
            handle.seek(max(0, seen - 16))
            if b"hvbench-init" in handle.read():
                timings["init_ms"] = elapsed * 1000
    return size


def parse_devices(text: str, device: str) -> dict[str, Any]:
    """DEVICES_SCRIPT's output -> {"disk": {device, sysfs, drivers}, "nic": {driver}}."""
    view: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "disk_path":
            view["disk"] = {"device": device, "sysfs": value, "drivers": []}
        elif key == "disk_driver" and "disk" in view:
            view["disk"]["drivers"].append(value)
        elif key == "nic_driver":
            view["nic"] = {"driver": value}
    return view
