"""trainwell: train deep neural networks well.

The deep-training playbook (initialization, nonsaturating activations, clipping, fast
optimizers, schedules, regularization, layer reuse) as exact, torch-native parts, a
:class:`Trainer` that is a convenience on top of them, and a doctor for broken runs.

Example:
    >>> import trainwell as tw
    >>> data = tw.data.load("digits", seed=0)
    >>> model = tw.nn.MLP(in_features=64, hidden=[64, 64], out_features=10)
    >>> trainer = tw.Trainer(model, tw.optim.build("adam", model.parameters(), lr=1e-3),
    ...                      epochs=2, batch_size=64, seed=0, progress=False)
    >>> history = trainer.fit(data)
"""

from __future__ import annotations

from . import data, doctor, nn, optim, train, transfer
from ._version import __version__
from .errors import UserError
from .train import Trainer

__all__ = ["Trainer", "UserError", "data", "doctor", "nn", "optim", "train", "transfer",
           "__version__"]
