"""The spatial-softmax keypoint read-out (``perception.projection: keypoints``): positions, motion,
channel statistics, the extractor's layout, the config's refusals, and a camera policy end to end."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from tiny import set_args

from agents.extractors import BackboneExtractor
from agents.keypoints import ChannelStandardize, SpatialKeypoints
from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.training.engine.artifacts import load_policy


def _peaks(grid: int, cells: list[tuple[int, int]]) -> torch.Tensor:
    """One sample, one channel per frame: a single bright cell (row, col) per frame, oldest first."""
    maps = torch.zeros(len(cells), 1, grid, grid)
    for frame, (row, col) in enumerate(cells):
        maps[frame, 0, row, col] = 1.0
    return maps.reshape(1, -1)


def _sharp_keypoint(grid: int, n_frames: int) -> SpatialKeypoints:
    """One keypoint that follows the bright cell: identity standardization, filter 1, a high gain."""
    kp = SpatialKeypoints(channels=1, grid=grid, n_frames=n_frames, keypoints=1).eval()
    with torch.no_grad():
        kp.filters.weight.fill_(1.0)
        kp.filters.bias.zero_()
        kp.log_gain.fill_(float(np.log(200.0)))
    return kp


def test_a_keypoint_sits_on_the_bright_cell_and_its_motion_is_the_scaled_difference() -> None:
    grid = 4
    centre = [(i + 0.5) / grid * 2 - 1 for i in range(grid)]  # -0.75, -0.25, 0.25, 0.75
    kp = _sharp_keypoint(grid, n_frames=3)
    cells = [(2, 0), (1, 3), (0, 1)]  # oldest -> newest, (row, col)
    with torch.no_grad():
        positions = kp.positions(_peaks(grid, cells))[0]
        out = kp(_peaks(grid, cells))[0]
    for frame, (row, col) in enumerate(cells):
        torch.testing.assert_close(
            positions[frame], torch.tensor([centre[col], centre[row]]), atol=1e-4, rtol=0
        )
    assert out.shape == (kp.out_features,) == (6,)
    newest, prev, oldest = positions[2], positions[1], positions[0]
    torch.testing.assert_close(out[:2], newest)
    torch.testing.assert_close(out[2:4], (newest - prev) * grid)
    torch.testing.assert_close(out[4:], (prev - oldest) * grid)
    # one cell to the right reads as a motion of 2 in x (cells are 2 / grid apart, times grid)
    with torch.no_grad():
        moved = kp(_peaks(grid, [(0, 0), (0, 0), (0, 1)]))[0]
    torch.testing.assert_close(moved[2:4], torch.tensor([2.0, 0.0]), atol=1e-3, rtol=0)


def test_the_same_filters_apply_at_every_cell() -> None:
    """Moving the whole scene by one cell moves every keypoint by one cell (no per-cell weights)."""
    torch.manual_seed(0)
    kp = SpatialKeypoints(channels=3, grid=6, n_frames=1, keypoints=4).eval()
    with torch.no_grad():
        kp.log_gain.fill_(float(np.log(100.0)))
    scene = torch.zeros(1, 3, 6, 6)
    scene[0, :, 1, 1] = torch.tensor([3.0, -1.0, 2.0])  # one object, in the top-left part
    shifted = torch.roll(scene, shifts=2, dims=3)  # two cells to the right, still inside
    with torch.no_grad():
        a, b = kp.positions(scene.reshape(1, -1))[0, 0], kp.positions(shifted.reshape(1, -1))[0, 0]
    dx, dy = b[:4] - a[:4], b[4:] - a[4:]
    # every keypoint whose map peaks on the object follows it by 2 cells = 4/6 in x, not at all in y
    on_object = (a[:4] + 0.5).abs() < 0.05  # the centre of column 1 of 6
    assert on_object.any()
    torch.testing.assert_close(dx[on_object], torch.full_like(dx[on_object], 4 / 6), atol=2e-2, rtol=0)
    torch.testing.assert_close(dy[on_object], torch.zeros_like(dy[on_object]), atol=2e-2, rtol=0)


def test_channel_statistics_cumulate_in_training_and_are_fixed_in_eval() -> None:
    rng = np.random.default_rng(0)
    norm = ChannelStandardize(2)
    batches = [rng.normal([1.0, -3.0], [2.0, 0.5], size=(n, 3, 3, 2)).transpose(0, 3, 1, 2) for n in (5, 11)]
    for batch in batches:
        norm(torch.as_tensor(batch, dtype=torch.float32))
    seen = np.concatenate([b.transpose(1, 0, 2, 3).reshape(2, -1) for b in batches], axis=1)
    np.testing.assert_allclose(norm.mean.numpy(), seen.mean(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), seen.var(axis=1), rtol=1e-4)
    assert float(norm.count) == seen.shape[1]
    norm.eval()
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    out = norm(torch.as_tensor(batches[0], dtype=torch.float32))
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())
    expected = (batches[0] - seen.mean(axis=1)[None, :, None, None]) / np.sqrt(
        seen.var(axis=1)[None, :, None, None] + norm.eps
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_the_extractor_outputs_two_coordinates_per_keypoint_per_frame() -> None:
    space = spaces.Box(0, 255, (6, 40, 40), np.uint8)
    extractor = BackboneExtractor(
        space, backbone="small_cnn", weights=None, pool=2, projection="keypoints", keypoints=5
    )
    assert extractor.features_dim == 2 * 5 * 2
    out = extractor(torch.randint(0, 256, (3, 6, 40, 40), dtype=torch.uint8))
    assert out.shape == (3, 20)
    assert out[:, :10].abs().max() <= 1.0  # the newest frame's positions lie in [-1, 1]
    with pytest.raises(ValueError, match="needs readout 'stack'"):
        BackboneExtractor(
            space, backbone="small_cnn", weights=None, pool=2, projection="keypoints", readout="diff"
        )
    with pytest.raises(ValueError, match="pool >= 2"):
        BackboneExtractor(space, backbone="small_cnn", weights=None, pool=1, projection="keypoints")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["perception={projection: keypoints}"],
            "perception.pool: 1 leaves no positions for projection: keypoints",
        ),
        (
            ["perception={projection: keypoints, pool: 4, readout: diff}"],
            "perception.readout: diff with projection: keypoints",
        ),
        (
            ["perception={projection: keypoints, pool: 4, features_dim: 64}"],
            "perception.features_dim: projection: keypoints outputs 2 x keypoints x frames features",
        ),
        (["perception={keypoints: 8}"], "perception.keypoints: only with projection: keypoints"),
        (
            ["perception={projection: keypoints, pool: 4}", "algo.normalize_obs=true"],
            "algo.normalize_obs: it would normalize every cell of the cached grid on its own",
        ),
    ],
)
def test_keypoint_config_errors_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, ["pixels=true", "observation.action_history=0", *overrides])


def test_a_keypoint_camera_policy_trains_and_exports(tmp_path: Path) -> None:
    """Pretraining on the pixel pendulum with keypoints: the head's channel statistics are gathered from
    the rollouts and saved with the policy, nothing normalizes the grid before it, and the ONNX graph of
    the policy (frames and action history in) matches `predict()` on target frames."""
    perception = (
        "perception={backbone: small_cnn, weights: null, pool: 2, projection: keypoints, keypoints: 4}"
    )
    overrides = [
        "pixels=true",
        "pretrain.nominal_baseline=false",
        "observation.action_history=2",
        "algo.normalize_obs=false",
        "seeds=[0]",
        "workers=1",
        perception,
    ]
    assert main(["pretrain", *set_args(tmp_path, *overrides)]) == 0
    policy = tmp_path / "quickstart/pretrain_randomized/seed0/policy.pt"
    art = load_policy(policy)
    states = art.states["policy"]
    count = next(v for k, v in states.items() if k.endswith("projection.standardize.count"))
    mean = next(v for k, v in states.items() if k.endswith("projection.standardize.mean"))
    assert float(count) > 0 and mean.abs().sum() > 0  # statistics gathered from the camera frames
    assert art.obs_rms is None
    width = art.meta["observation_layout"]["image"][1]
    assert art.meta["observation_space"]["shape"] == [width + 2]
    from test_perception import _exported_graph_matches_predict

    _exported_graph_matches_predict(policy, "simreal/InvertedPendulum-Pixels-Target-Latency-v0")
