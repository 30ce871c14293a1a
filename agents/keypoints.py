"""A spatial-softmax keypoint read-out of pooled feature grids (Levine et al. 2016, spatial autoencoders).

A frozen backbone's g x g grid of C channels per frame is a large vector (C*g*g; 3,840 at the pendulum's
8x8 grid of EfficientNet-Lite0 stage 3) in which a thin moving pole changes a few cells. A linear
projection of it fits the episodes it was trained on and not new ones (BENCHMARKS.md "Why the camera
students fall": 17-50x lower error on its own episodes). The keypoint read-out shares one 1x1 convolution
across cells, turns each of its K output maps into a probability over the cells (a softmax with a learned
temperature) and keeps only where each map is: the expected x and y of every map, 2K numbers per frame,
in [-1, 1]. What the policy reads is where things are and how they move, not the feature values
themselves; the same K filters apply everywhere, so the read-out cannot memorize cells.

Channels are standardized first with running statistics (mean and variance per channel over frames and
cells, cumulated in training mode, as ``VecNormalize`` does per entry, and applied the same way in
training and evaluation). Per-cell normalization (``algo.normalize_obs`` on cached features) would give
every cell its own scale and break the shared filters; the experiment config refuses that combination.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelStandardize(nn.Module):
    """(M, C, H, W) -> per-channel standardized, with a running mean / variance over everything seen in
    training mode (a cumulative average, like SB3's ``RunningMeanStd``); eval mode only applies them."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(maps.detach())
        shape = (1, -1, 1, 1)
        return (maps - self.mean.view(shape)) / torch.sqrt(self.var.view(shape) + self.eps)

    @torch.no_grad()
    def _update(self, maps: torch.Tensor) -> None:
        values = maps.transpose(0, 1).reshape(maps.shape[1], -1).double()
        n = float(values.shape[1])
        if n == 0:
            return
        batch_mean, batch_var = values.mean(dim=1), values.var(dim=1, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean.double()
        mean = self.mean.double() + delta * n / total
        m2 = self.var.double() * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.copy_(mean.float())
        self.var.copy_((m2 / total).float())
        self.count.copy_(total)


class SpatialKeypoints(nn.Module):
    """Pooled grids of k frames (N, k*C*g*g), oldest first -> keypoints (N, 2K*k): the newest frame's K
    (x, y) positions, then the k-1 motions between consecutive frames, newest first.

    A motion is the difference of two frames' positions times ``grid`` (so a move of one cell reads
    as 2, of the order of the positions); positions lie in [-1, 1], x left to right, y top to bottom.

    :param channels: C, the backbone tap's channels.
    :param grid: g, the side of the pooled grid (>= 2: a 1x1 grid has no positions).
    :param n_frames: k, the stacked frames.
    :param keypoints: K, maps (filters) per frame.
    """

    def __init__(self, channels: int, grid: int, n_frames: int, keypoints: int) -> None:
        super().__init__()
        if grid < 2:
            raise ValueError(f"keypoints need a grid of at least 2x2 cells (pool >= 2), got pool {grid}")
        if keypoints <= 0:
            raise ValueError(f"keypoints must be positive, got {keypoints}")
        self.channels, self.grid, self.n_frames, self.keypoints = channels, grid, n_frames, keypoints
        self.standardize = ChannelStandardize(channels)
        self.filters = nn.Conv2d(channels, keypoints, kernel_size=1)
        # exp(log_gain) scales the filters' responses before the softmax: a learned inverse temperature,
        # starting where a unit response difference makes a cell ~50x likelier than its neighbour.
        self.log_gain = nn.Parameter(torch.tensor(4.0).log())
        centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid * 2 - 1
        self.register_buffer("xs", centres.repeat(grid), persistent=False)  # row-major cells
        self.register_buffer("ys", centres.repeat_interleave(grid), persistent=False)

    @property
    def out_features(self) -> int:
        return 2 * self.keypoints * self.n_frames

    def positions(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, k*C*g*g) -> (N, k, 2K): each frame's keypoints, x then y, oldest frame first."""
        n = pooled.shape[0]
        maps = pooled.reshape(n * self.n_frames, self.channels, self.grid, self.grid)
        logits = self.filters(self.standardize(maps)).flatten(2) * self.log_gain.exp()
        weights = logits.softmax(dim=-1)  # (N*k, K, g*g)
        xy = torch.cat([(weights * self.xs).sum(-1), (weights * self.ys).sum(-1)], dim=-1)
        return xy.reshape(n, self.n_frames, 2 * self.keypoints)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        frames = self.positions(pooled).flip(1)  # newest first
        motion = (frames[:, :-1] - frames[:, 1:]) * self.grid
        return torch.cat([frames[:, :1], motion], dim=1).reshape(pooled.shape[0], -1)
