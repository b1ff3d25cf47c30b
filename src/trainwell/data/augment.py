"""Standard image augmentation on batched tensors: random crop with zero padding, flips.

The whole batch is done by one gather, on whatever device the batch is on: the batch is
zero-padded once, and output pixel ``(n, c, i, j)`` reads padded pixel
``(n, c, dy_n + i, dx_n + j')`` with ``j' = W − 1 − j`` for a flipped sample and ``j``
otherwise. There is no per-sample Python loop.

The draws come only from the ``torch.Generator`` passed in, so a run that seeds it from
its own seed and the epoch (or step) draws the same crops after a resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Augment"]


class Augment:
    """Random crop of a zero-padded image (``crop_padding`` pixels a side) and a random flip.

    For a batch ``x`` of shape ``(N, C, H, W)``, sample ``n`` gets offsets
    ``dy_n, dx_n ~ U{0, …, 2p}`` (p = ``crop_padding``) and a flip ``f_n ~ Bernoulli(0.5)``;
    with ``x̃`` the input zero-padded by ``p`` on each side,

        out[n, :, i, j] = x̃[n, :, dy_n + i, dx_n + (W − 1 − j if f_n else j)]

    i.e. the H×W window at ``(dy_n, dx_n)`` of the padded image, mirrored left-right when
    ``f_n``. Offset ``(p, p)`` without a flip returns the image itself. Draw order (what a
    seed reproduces): ``dy`` and ``dx`` as one ``randint`` of shape ``(N, 2)``, then the
    flips as one ``rand(N) < 0.5``. Zero is the mean of a standardized input, so the padding
    adds no new intensity.

    Args:
        crop_padding: zero pixels added on each side before cropping (0: no crop). 4 is the
            usual value for 32×32 images.
        flip: mirror each image left-right with probability 0.5.

    Raises:
        ValueError: a negative or non-integer ``crop_padding``.

    Example:
        >>> augment = Augment(crop_padding=4, flip=True)
        >>> g = torch.Generator().manual_seed(0)
        >>> augment(torch.ones(8, 3, 32, 32), g).shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(self, crop_padding: int = 4, flip: bool = True) -> None:
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding: must be an integer >= 0, got {crop_padding!r}")
        self.crop_padding = crop_padding
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return f"Augment(crop_padding={self.crop_padding}, flip={self.flip})"

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
        """Draw the random choices of a batch of ``n`` images, on the generator's device.

        Args:
            n: batch size.
            generator: the only source of randomness.

        Returns:
            ``(dy, dx, flipped)``: int64 offsets in ``0..2p`` and a bool mask, each ``(n,)``.
            Without a crop the offsets are all ``p`` = 0; without flips the mask is all False
            (and nothing is drawn for it).
        """
        device = generator.device
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator,
                                device=device)
        if self.flip:
            flipped = torch.rand(n, generator=generator, device=device) < 0.5
        else:
            flipped = torch.zeros(n, dtype=torch.bool, device=device)
        return offsets[:, 0], offsets[:, 1], flipped

    def apply(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
              flipped: torch.Tensor) -> torch.Tensor:
        """Crop and flip ``x`` by given choices (see the class docstring for the formula).

        Args:
            x: images ``(N, C, H, W)``, any dtype and device.
            dy, dx: ``(N,)`` integer offsets into the padded image, in ``0..2p``.
            flipped: ``(N,)`` bool, True to mirror that image left-right.

        Returns:
            A new tensor of the shape, dtype and device of ``x``.

        Raises:
            ValueError: ``x`` is not 4-dimensional.
        """
        if x.dim() != 4:
            raise ValueError(f"x: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        p = self.crop_padding
        dev = x.device
        dy, dx, flipped = dy.to(dev), dx.to(dev), flipped.to(dev)
        padded = F.pad(x, (p, p, p, p)) if p else x
        i = torch.arange(h, device=dev)
        j = torch.arange(w, device=dev)
        rows = dy[:, None] + i  # (N, H)
        cols = dx[:, None] + torch.where(flipped[:, None], w - 1 - j, j)  # (N, W)
        # Four broadcast index tensors → one gather of shape (N, C, H, W).
        return padded[torch.arange(n, device=dev)[:, None, None, None],
                      torch.arange(c, device=dev)[None, :, None, None],
                      rows[:, None, :, None],
                      cols[:, None, None, :]]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment the batch ``x`` ``(N, C, H, W)`` with draws from ``generator``.

        Args:
            x: images, any dtype and device.
            generator: the only source of randomness (on any device; the draws move to
                ``x``'s device). Seed it from the run's seed and epoch for exact resume.

        Returns:
            The augmented batch: same shape, dtype and device as ``x``.
        """
        if x.dim() != 4:
            raise ValueError(f"x: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        if self.crop_padding == 0 and not self.flip:
            return x
        return self.apply(x, *self.draw(x.shape[0], generator))
