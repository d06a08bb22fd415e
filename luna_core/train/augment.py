"""The book's data augmentation (chapter 12), done per batch on the training device.

Each training sample gets a random 3-D affine: a flip of each axis, a shift of up to ``offset``
of the chunk, a scale of up to ±``scale``, a rotation about the slice (index) axis only, since
slices are anisotropic; resampled with one ``affine_grid`` + ``grid_sample`` call for the whole
batch (border padding), then Gaussian noise of ``noise`` HU. A sample's parameters come from
(seed, epoch, its position in the epoch's order), never from the batch, the rank or a worker:
DDP, a resume and ``--num-workers`` leave them unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: The book's values for each part, the ones ``--augmented`` turns on.
BOOK = {"flip": True, "offset": 0.1, "scale": 0.2, "rotate": True, "noise": 25.0}


@dataclass(frozen=True)
class Augmentation:
    flip: bool = False
    offset: float = 0.0       # fraction of the chunk (normalised coordinates span 2)
    scale: float = 0.0        # +- fraction
    rotate: bool = False
    noise: float = 0.0        # standard deviation in HU

    @classmethod
    def from_options(cls, args) -> Augmentation:
        """From the options: ``--augmented`` turns every part on at the book's value; each
        ``--augment-*`` sets its own."""
        every = bool(getattr(args, "augmented", False))
        return cls(flip=bool(args.augment_flip) or every,
                   offset=float(args.augment_offset or (BOOK["offset"] if every else 0.0)),
                   scale=float(args.augment_scale or (BOOK["scale"] if every else 0.0)),
                   rotate=bool(args.augment_rotate) or every,
                   noise=float(args.augment_noise or (BOOK["noise"] if every else 0.0)))

    @property
    def enabled(self) -> bool:
        return bool(self.flip or self.offset or self.scale or self.rotate or self.noise)

    def describe(self) -> str:
        parts = [name for name, on in (("flip", self.flip), ("rotate", self.rotate)) if on]
        parts += [f"{name} {value:g}" for name, value in (
            ("offset", self.offset), ("scale", self.scale), ("noise", self.noise)) if value]
        return ", ".join(parts) or "none"


#: The streams of a sample's draws: its augmentation's, and the task's own (a crop's place).
AUGMENT_STREAM, TASK_STREAM = 0x4C554E41, 0x43524F50


def sample_rng(seed: int, epoch: int, position: int,
               stream: int = AUGMENT_STREAM) -> np.random.Generator:
    """The generator of one sample's augmentation (or, ``TASK_STREAM``, of the task's own
    draws): (seed, epoch, position) only."""
    return np.random.default_rng([int(seed), int(epoch), int(position), int(stream)])


def affine_params(aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """One sample's (3, 4) ``affine_grid`` matrix. Its axes are (x, y, z) = (col, row,
    index), as affine_grid's are; the rotation turns x and y, about the index axis."""
    t = np.eye(4)
    draws = rng.random(10)         # always the same draws, whatever is enabled
    for i in range(3):
        if aug.flip and draws[i] > 0.5:
            t[i, i] *= -1
    shift = draws[3:6] * 2 - 1
    if aug.offset:
        t[:3, 3] = aug.offset * shift
    if aug.scale:
        t[[0, 1, 2], [0, 1, 2]] *= 1.0 + aug.scale * (draws[6:9] * 2 - 1)
    if aug.rotate:
        angle = draws[9] * 2 * math.pi
        c, s = math.cos(angle), math.sin(angle)
        rotation = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        t = t @ rotation
    return t[:3]


def batch_params(aug: Augmentation, seed: int, epoch: int, positions,
                 dims: int = 3) -> tuple[np.ndarray, list[int]]:
    """(N, 3, 4) matrices (``dims`` 2: (N, 2, 3), the same draws on the slice's (col, row)
    plane) and N noise seeds for the samples at ``positions`` (their places in the epoch's
    whole order)."""
    thetas, noise_seeds = [], []
    for position in positions:
        rng = sample_rng(seed, epoch, position)
        theta = affine_params(aug, rng)
        thetas.append(theta if dims == 3 else theta[:2][:, [0, 1, 3]])
        noise_seeds.append(int(rng.integers(0, 2**62)))
    return np.stack(thetas), noise_seeds


def resample(chunks: torch.Tensor, theta: np.ndarray) -> torch.Tensor:
    """Each chunk (or slice) of the batch through its (3, 4) (or (2, 3)) affine: one
    affine_grid and one grid_sample call for the whole batch ((tri)linear, border padding,
    voxel centres aligned)."""
    theta_t = torch.as_tensor(theta, dtype=chunks.dtype, device=chunks.device)
    grid = F.affine_grid(theta_t, list(chunks.shape), align_corners=False)
    return F.grid_sample(chunks, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def augment(chunks: torch.Tensor, aug: Augmentation, seed: int, epoch: int,
            positions, mask: torch.Tensor | None = None):
    """The batch (N, 1, D, H, W) float, augmented on its own device. Slices (N, C, H, W)
    get the 2-D part of the same draws (flip, offset and scale of columns and rows, the
    rotation); ``mask`` (N, 1, H, W), their label, the same affine (resampled, then above
    0.5) and no noise: returns (slices, mask) then."""
    theta, noise_seeds = batch_params(aug, seed, epoch, positions, dims=chunks.dim() - 2)
    out = resample(chunks, theta)
    if aug.noise:
        noise = torch.empty_like(out)
        for j, noise_seed in enumerate(noise_seeds):
            g = torch.Generator(device=chunks.device).manual_seed(noise_seed)
            noise[j] = torch.randn(out.shape[1:], generator=g, device=chunks.device,
                                   dtype=out.dtype)
        out = out + noise * aug.noise
    if mask is None:
        return out
    return out, (resample(mask.to(out.dtype), theta) > 0.5).to(mask.dtype)
