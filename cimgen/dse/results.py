"""The outcome of a sweep run: where its files are and what it measured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SweepResult:
    out_dir: Path
    csv_path: Path
    rows: list[dict[str, str]]
    points_run: int
    points_resumed: int
    seconds: float
    images: int
    ideal_accuracy: float
    files: list[Path]

    seeds: int = 1
    seconds_total: float = 0.0

    @property
    def throughput(self) -> float:
        """Images x (point, seed) runs per second in this invocation (0 if none ran)."""
        n = self.images * self.points_run * self.seeds
        return n / self.seconds if self.seconds > 0 else 0.0
