"""Batched crop-and-flip augmentation: exact windows, exact flips, seeded draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainwell.data.augment import Augment


def images(n=16, c=3, h=8, w=10, dtype=torch.float32):
    # Distinct nonzero values everywhere, so a wrong pixel or a zero from padding shows.
    return (torch.arange(n * c * h * w, dtype=torch.float64) + 1).reshape(n, c, h, w).to(dtype)


def test_each_image_is_the_exact_window_of_the_padded_input():
    torch.set_num_threads(1)
    aug = Augment(crop_padding=4, flip=False)
    x = images()
    dy, dx, flipped = aug.draw(len(x), torch.Generator().manual_seed(0))
    out = aug(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    assert not flipped.any()
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 8  # the offsets really vary
    for n in range(len(x)):
        a, b = int(dy[n]), int(dx[n])
        assert 0 <= a <= 8 and 0 <= b <= 8
        assert torch.equal(out[n], padded[n, :, a:a + 8, b:b + 10])


def test_windows_at_the_corners_hold_the_zero_padding():
    aug = Augment(crop_padding=2, flip=False)
    x = images(n=2, c=1, h=4, w=4)
    out = aug.apply(x, torch.tensor([0, 4]), torch.tensor([0, 4]), torch.tensor([False, False]))
    assert torch.equal(out[0, 0, :2], torch.zeros(2, 4))  # two rows of padding on top
    assert torch.equal(out[0, 0, 2:, 2:], x[0, 0, :2, :2])
    assert torch.equal(out[1, 0, 2:], torch.zeros(2, 4))  # two rows of padding below
    assert torch.equal(out[1, 0, :2, :2], x[1, 0, 2:, 2:])
    centre = aug.apply(x, torch.tensor([2, 2]), torch.tensor([2, 2]), torch.tensor([False] * 2))
    assert torch.equal(centre, x)


def test_flip_is_exact_and_only_where_drawn():
    aug = Augment(crop_padding=0, flip=True)
    x = images(n=32)
    _, _, flipped = aug.draw(len(x), torch.Generator().manual_seed(5))
    out = aug(x, torch.Generator().manual_seed(5))
    assert 0 < int(flipped.sum()) < len(x)
    for n in range(len(x)):
        assert torch.equal(out[n], x[n].flip(-1) if flipped[n] else x[n])


def test_crop_and_flip_together():
    aug = Augment(crop_padding=3, flip=True)
    x = images(n=24)
    dy, dx, flipped = aug.draw(len(x), torch.Generator().manual_seed(9))
    out = aug(x, torch.Generator().manual_seed(9))
    padded = F.pad(x, (3, 3, 3, 3))
    for n in range(len(x)):
        window = padded[n, :, int(dy[n]):int(dy[n]) + 8, int(dx[n]):int(dx[n]) + 10]
        assert torch.equal(out[n], window.flip(-1) if flipped[n] else window)


def test_same_seed_same_output_and_another_seed_differs():
    aug = Augment()
    x = images(n=16, h=32, w=32)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draws_come_only_from_the_generator():
    aug = Augment()
    x = images(n=4)
    torch.manual_seed(0)
    a = aug(x, torch.Generator().manual_seed(1))
    torch.manual_seed(99)  # the global generator has no say
    b = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.uint8])
def test_dtype_device_and_shape_preserved(dtype):
    x = images(n=3, c=1, h=5, w=6, dtype=torch.float32).remainder(200).to(dtype)
    out = Augment(crop_padding=1)(x, torch.Generator().manual_seed(0))
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape


def test_no_augmentation_is_the_identity():
    x = images(n=2)
    assert torch.equal(Augment(crop_padding=0, flip=False)(x, torch.Generator()), x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="^crop_padding:"):
        Augment(crop_padding=-1)
    with pytest.raises(ValueError, match="^x:"):
        Augment()(torch.zeros(3, 8, 8), torch.Generator())
