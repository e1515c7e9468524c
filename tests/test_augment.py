from __future__ import annotations

import torch

from slimbench.data.augment import BatchAugmenter, cutout, normalize, random_crop, random_flip


def batch(n: int = 16) -> torch.Tensor:
    x = torch.randint(1, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return x.contiguous(memory_format=torch.channels_last)


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = batch()
    out = random_crop(x, 4, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_flip_mirrors_about_half_the_images():
    x = batch(400)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(len(x))]
    kept = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 150 < sum(flipped) < 250


def test_cutout_zeroes_one_square_per_image():
    x = batch()
    out = cutout(x, 8, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1).flatten(1).sum(1)  # x has no zero pixels, so zeros are cut out
    assert zeros.max() <= 64 and zeros.min() >= 16  # a clipped square keeps at least a quarter


def test_normalize_gives_standard_scores_and_channels_last():
    x = torch.full((2, 3, 4, 4), 128, dtype=torch.uint8)
    out = normalize(x, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.25), atol=1e-6)


def test_pipeline_is_deterministic_under_a_seed():
    aug = BatchAugmenter(cutout_size=8, mixup_alpha=0.4, cutmix_alpha=1.0, num_classes=10)
    x, y = batch(), torch.arange(16) % 10
    a = aug(x, y, torch.Generator().manual_seed(7))
    b = aug(x, y, torch.Generator().manual_seed(7))
    c = aug(x, y, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_mixing_gives_soft_targets_that_sum_to_one():
    x, y = batch(), torch.arange(16) % 10
    for aug in (BatchAugmenter(mixup_alpha=1.0), BatchAugmenter(cutmix_alpha=1.0)):
        images, targets = aug(x, y, torch.Generator().manual_seed(3))
        assert images.dtype == torch.float32 and images.shape == (16, 3, 32, 32)
        assert targets.shape == (16, 10)
        assert torch.allclose(targets.sum(1), torch.ones(16))


def test_plain_pipeline_keeps_integer_labels():
    x, y = batch(), torch.arange(16) % 10
    images, targets = BatchAugmenter()(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(targets, y)
    assert images.is_contiguous(memory_format=torch.channels_last)
