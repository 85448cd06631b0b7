"""Augmentations that fit microscopy tiles, on RGB uint8 batches.

Tissue and cells have no preferred orientation, so flips and 90-degree rotations keep a
tile's label. Intensity and stain jitter are kept small: a strong brightness change
would turn a normal tile into a saturated one and change its anomaly label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSettings:
    """Strength of each augmentation; zero switches it off."""

    flips: bool = True
    rotations: bool = True
    gain: float = 0.08  # brightness gain drawn from [1 - gain, 1 + gain]
    offset: float = 6.0  # brightness offset in grey values, from [-offset, offset]
    stain: float = 0.04  # per-channel gain drawn from [1 - stain, 1 + stain]


def augment_tiles(tiles: torch.Tensor, generator: torch.Generator, settings: AugmentSettings = AugmentSettings()) -> torch.Tensor:
    """Apply random flips, 90-degree rotations and intensity and stain jitter.

    Parameters
    ----------
    tiles : (n, rows, columns, 3) uint8 tensor
        Square tiles.
    generator : torch.Generator
        Source of all random draws, so a seeded generator gives the same batch.
    settings : AugmentSettings

    Returns
    -------
    (n, rows, columns, 3) uint8 tensor
    """
    n = tiles.shape[0]
    out = tiles
    if settings.flips:
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(2), out)
    if settings.rotations:
        turns = torch.randint(0, 4, (n,), generator=generator)
        rotated = out.clone()
        for k in (1, 2, 3):
            chosen = turns == k
            if chosen.any():
                rotated[chosen] = torch.rot90(out[chosen], k, dims=(1, 2))
        out = rotated
    if settings.gain or settings.offset or settings.stain:
        gain = 1.0 + settings.gain * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
        offset = settings.offset * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
        stain = 1.0 + settings.stain * (2 * torch.rand(n, 1, 1, 3, generator=generator) - 1)
        jittered = out.float() * gain * stain + offset
        out = jittered.round_().clamp_(0, 255).to(torch.uint8)
    return out
