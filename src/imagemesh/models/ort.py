"""ONNX Runtime, imported with its telemetry off.

ONNX Runtime 1.29+ on Linux writes a device id and an event store under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` and queues telemetry events, unless the
environment variable ``ORT_DISABLE_TELEMETRY=1`` is set **before** it is imported (checked
here: ``disable_telemetry_events()`` after import does not stop it). imagemesh imports
ONNX Runtime only through this module, which sets the variable unless the user set it
(``setdefault``), so nothing is written outside the collection and no event is queued.
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort  # noqa: E402  (after the variable, on purpose)

__all__ = ["ort"]
