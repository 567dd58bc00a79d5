"""Feed named arrays to onnxruntime's calibrators one sample at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class ArrayDataReader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, arrays: Mapping[str, np.ndarray], limit: int | None = None) -> None:
        self._arrays = arrays
        count = len(next(iter(arrays.values())))
        self._count = count if limit is None else min(count, limit)
        self._iter = self._samples()

    def _samples(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self._count):
            yield {name: array[i : i + 1] for name, array in self._arrays.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._samples()

    def __len__(self) -> int:
        return self._count
