"""CPU seconds and resident memory of processes, from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            # The command name may hold spaces: fields are counted after its closing ")".
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Usage:
    """CPU seconds and peak RSS of named processes over a measured window: `start()`, then
    `sample()` now and then (peaks are sampled), then `stop()`."""

    pids: dict[str, int]
    cpu_start: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.cpu_start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.peak_rss = {name: rss_bytes(pid) for name, pid in self.pids.items()}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss_bytes(pid))

    def stop(self) -> None:
        self.sample()
        self.cpu = {
            name: cpu_seconds(pid) - self.cpu_start.get(name, 0.0)
            for name, pid in self.pids.items()
        }

    def per_thousand(self, messages: int) -> dict[str, float]:
        return {name: round(s * 1000 / max(messages, 1), 3) for name, s in self.cpu.items()}

    def peak_mb(self) -> dict[str, float]:
        return {name: round(b / 2**20, 1) for name, b in self.peak_rss.items()}
