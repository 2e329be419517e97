"""A CSV logger that keeps the metrics of earlier attempts when a run resumes in its folder."""

from __future__ import annotations

import csv
from typing import Any

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

__all__ = ["ResumableCSVLogger"]


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing ``metrics.csv`` on start; this one appends to it
    and widens its header when new metric names appear, so no logged row is ever lost."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = sorted(header)


class ResumableCSVLogger(CSVLogger):
    """:class:`pytorch_lightning.loggers.CSVLogger` that appends across resumed attempts.

    Same arguments as ``CSVLogger``. Rows logged after the last checkpoint by an attempt that
    was killed stay in the file; their ``step`` column tells them apart from the resumed rows.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
