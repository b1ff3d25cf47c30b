"""Optional adapters that bring trainwell into the frameworks users already train with.

Each adapter lives in its own module and imports its framework there, so importing
``trainwell.integrations`` needs nothing beyond trainwell itself:

- :mod:`trainwell.integrations.lightning`: :class:`~trainwell.integrations.lightning.DoctorCallback`,
  the doctor as a PyTorch Lightning callback (``pip install 'trainwell[lightning]'``).

Example:
    >>> from trainwell.integrations.lightning import DoctorCallback
    >>> trainer = lightning.pytorch.Trainer(callbacks=[DoctorCallback(num_classes=10)])
"""

from __future__ import annotations

__all__: list[str] = []
