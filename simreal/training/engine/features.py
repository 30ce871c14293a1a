"""Frozen backbone features computed once per env step, in the vec env, so buffers hold features.

A frozen pretrained backbone inside the policy runs again for every minibatch of every PPO epoch, and an
off-policy replay buffer full of raw images makes every gradient step re-encode them. When the backbone
is frozen its output never changes, so it is computed once, where the images enter (SB3 #409):

- :class:`VecFrozenFeatures` runs the frozen part of a ``BackboneExtractor`` (``backbone_features``) on
  every batch of observations the vec env returns (reset, step and ``terminal_observation``), batched over
  envs, without grad; its observation space is a float32 Box of the feature shape.
- ``agents.extractors.CachedFeaturesHead`` is the trainable part (unfrozen blocks + projection) as the
  policy's features extractor. PPO's rollout buffer and SAC's replay buffer then hold features.

Both halves come from one plain-kwargs spec (the ``BackboneExtractor`` arguments)::

    venv, policy_kwargs = cache_frozen_features(venv, device, backbone="efficientnet_lite0",
                                                weights="imagenet", features_dim=256)
    model = PPO("MlpPolicy", venv, policy_kwargs=policy_kwargs, device=device)

Composition order: image envs -> (``VecFrameStack``) -> ``VecFrozenFeatures`` outermost among the wrappers
that read pixels; SB3 then sees a feature Box and inserts no ``VecTransposeImage``.

Saving: ``policy.state_dict()`` holds the head only (projection and unfrozen blocks). The frozen part
is rebuilt from its spec (packaged or local weights), or - for a random init or after AdaBN - from a
saved ``VecFrozenFeatures.extractor.state_dict()``, which simreal's policy artifacts carry.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from agents.extractors import BackboneExtractor, adapt_batchnorm
from agents.heads import CachedFeaturesHead
from simreal.simulation.pixels import IMAGE_KEY


def image_space_of(space: spaces.Space[Any]) -> spaces.Box:
    """The image Box of an observation space: the space itself, or the "image" entry of a Dict."""
    box = space.spaces.get(IMAGE_KEY) if isinstance(space, spaces.Dict) else space
    if not isinstance(box, spaces.Box) or box.shape is None or len(box.shape) != 3:
        raise ValueError(
            f"cached features need an image Box (C,H,W) or (H,W,C), or a Dict with an {IMAGE_KEY!r} one; "
            f"got {space}"
        )
    return box


def split_extractor(
    observation_space: spaces.Space[Any], **extractor_kwargs: Any
) -> tuple[BackboneExtractor, dict[str, Any]]:
    """The frozen half of ``BackboneExtractor(image space, **extractor_kwargs)`` and the head's kwargs.

    Returns ``(frozen, head_kwargs)``: ``frozen`` is the extractor in eval mode with every parameter
    ``requires_grad=False`` (only its ``backbone_features`` is used), ``head_kwargs`` the
    ``features_extractor_kwargs`` of :class:`CachedFeaturesHead` (the same spec plus ``image_shape`` and,
    for a Dict observation, ``extra_dims``). Raises ValueError for a spec with nothing frozen. A random
    init (``weights=None``) cannot be rebuilt from the spec: whoever saves the policy must save
    ``frozen.state_dict()`` too (simreal's artifacts do).
    """
    image = image_space_of(observation_space)
    shape = image.shape
    if not extractor_kwargs.get("frozen", True):
        raise ValueError("frozen=False: nothing to cache; use BackboneExtractor in the policy instead")
    frozen = BackboneExtractor(image, **extractor_kwargs)
    if not frozen.frozen_blocks:
        raise ValueError(f"unfreeze_last={len(frozen.trainable_blocks)} leaves no frozen block to cache")
    frozen.requires_grad_(False).eval()
    image_shape = tuple(int(n) for n in (shape if frozen.channels_first else (shape[2], shape[0], shape[1])))
    extra = sum(int(np.prod(box.shape)) for _, box in _other_entries(observation_space))
    if extra and frozen.trainable_blocks:
        raise ValueError(
            "Dict observations with cached features need a fully frozen backbone (unfreeze_last: 0)"
        )
    return frozen, {
        "image_shape": image_shape,
        **({"extra_dims": extra} if extra else {}),
        **extractor_kwargs,
    }


def _other_entries(space: spaces.Space[Any]) -> list[tuple[str, spaces.Box]]:
    """The entries of a Dict observation besides the image, in the Dict's order (Boxes only)."""
    if not isinstance(space, spaces.Dict):
        return []
    out = []
    for key, box in space.spaces.items():
        if key == IMAGE_KEY:
            continue
        if not isinstance(box, spaces.Box):
            raise ValueError(f"observation entry {key!r}: cached features take Box entries, got {box}")
        out.append((key, box))
    return out


class VecFrozenFeatures(VecEnvWrapper):
    """Replace image observations by the frozen features of ``extractor``, computed on ``device``.

    :param venv: vec env of uint8 images, HWC or CHW, 3k channels (what ``extractor`` was built for), or
        of Dict observations with such an ``"image"`` entry and Box entries beside it (``"state"``,
        ``"action_history"``).
    :param extractor: a ``BackboneExtractor`` with frozen blocks (from :func:`split_extractor`); only its
        ``backbone_features`` runs, so SB3's preprocessing is reproduced: HWC -> CHW, uint8 / 255, then
        the backbone's own normalization and resize.
    :param device: where the backbone runs; decided once by the caller (``simreal.training.engine.device``).

    Each call runs one batch: the ``num_envs`` observations plus any terminal observations, under
    ``torch.inference_mode``, ``channels_last``, and autocast on CUDA (bf16, else fp16). With stacked
    frames and a fully frozen backbone, only frames not seen before are encoded: a step's observation
    shares all but its newest frame with the previous one (their features are reused), and a reset
    observation repeats one frame (encoded once) - k times fewer backbone passes with k stacked frames.
    Features come back as float32 numpy: the numpy <-> torch boundary is here and nowhere else.
    ``feature_space`` is the new observation space (typed as a Box), ``extractor`` the frozen module.

    A Dict observation becomes one flat vector: the image's features, then the other entries flattened
    in the Dict's order; ``layout`` names each entry's slice (``{"image": [0, F], "state": [F, F+s],
    ...}``), and the policy's :class:`CachedFeaturesHead` passes the entries after the features by.
    """

    def __init__(self, venv: VecEnv, extractor: BackboneExtractor, device: torch.device | str = "cpu"):
        space = venv.observation_space
        image = image_space_of(space)
        channels = image.shape[0] if extractor.channels_first else image.shape[2]
        if channels != 3 * extractor.n_frames:
            raise ValueError(
                f"observation space {image.shape} does not fit the extractor ({extractor.n_frames} frames, "
                f"{'CHW' if extractor.channels_first else 'HWC'})"
            )
        if not extractor.frozen_blocks:
            raise ValueError("the extractor has no frozen block: nothing to cache")
        self.device = torch.device(device)
        self.extractor = extractor.to(self.device).eval()
        self.image_space = image
        self._others = _other_entries(space)
        # Frame-by-frame reuse needs features that are per-frame rows (a fully frozen, pooled backbone).
        self._reuse = extractor.n_frames > 1 and not extractor.trainable_blocks
        self._last: tuple[NDArray[Any], NDArray[np.float32]] | None = None  # images, per-frame rows
        features = self.encode(np.zeros((1, *image.shape), dtype=image.dtype))
        width = int(np.prod(features.shape[1:]))
        self.layout: dict[str, tuple[int, int]] = {IMAGE_KEY: (0, width)}
        for key, box in self._others:
            start = next(reversed(self.layout.values()))[1]
            self.layout[key] = (start, start + int(np.prod(box.shape)))
        shape = features.shape[1:] if not self._others else (next(reversed(self.layout.values()))[1],)
        self.feature_space = spaces.Box(-np.inf, np.inf, shape, np.float32)
        super().__init__(venv, observation_space=self.feature_space)

    def encode(self, images: NDArray[Any]) -> NDArray[np.float32]:
        """Frozen features (N, *feature shape) of a batch of images shaped like the image space."""
        if images.shape[1:] != self.image_space.shape:
            raise ValueError(f"expected images (N, *{self.image_space.shape}), got {images.shape}")
        with torch.inference_mode(), _autocast(self.device):
            batch = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
            features = self.extractor.backbone_features(batch)
        return features.float().cpu().numpy()

    def observe(self, obs: Any) -> NDArray[np.float32]:
        """A batch of env observations (images, or Dicts of batched entries) -> what the policy reads."""
        if not self._others:
            return self.encode(np.asarray(obs))
        return self.joined(self.encode(np.asarray(obs[IMAGE_KEY])), obs)

    def joined(self, features: NDArray[np.float32], obs: Any) -> NDArray[np.float32]:
        """Features, then the other Dict entries flattened (``layout``); the features alone for images."""
        if not self._others:
            return features
        n = len(features)
        rest = [np.asarray(obs[key], dtype=np.float32).reshape(n, -1) for key, _ in self._others]
        return np.concatenate([features.reshape(n, -1), *rest], axis=1)

    def reset(self) -> NDArray[np.float32]:
        obs = self.venv.reset()
        images = self._images(obs)
        rows = self.encode_frames(images, [None] * self.num_envs, self._last)
        self._remember(images, rows)
        return self.joined(self.features(rows), obs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        batch = self._images(obs)
        # A finished env's new observation starts an episode; its terminal one continues the last step.
        previous: list[int | None] = [None if i in ended else i for i in range(self.num_envs)]
        terminal = [infos[i]["terminal_observation"] for i in ended]
        if ended:
            batch = np.concatenate([batch, np.stack([self._images(t) for t in terminal])])
            previous += ended
        rows = self.encode_frames(batch, previous, self._last)
        features = self.features(rows)
        for row, (i, last) in enumerate(zip(ended, terminal, strict=True), start=self.num_envs):
            single = {key: np.asarray(last[key])[None] for key, _ in self._others}
            infos[i]["terminal_observation"] = self.joined(features[row : row + 1], single)[0]
        self._remember(batch[: self.num_envs], rows[: self.num_envs])
        return self.joined(features[: self.num_envs], obs), rewards, dones, infos

    def _images(self, obs: Any) -> NDArray[Any]:
        """The image part of observations (a batch, or one terminal observation)."""
        return np.asarray(obs[IMAGE_KEY] if self._others else obs)

    # ----- frames already encoded are not encoded again -----

    @property
    def reuses(self) -> bool:
        """Whether frames are encoded once each (stacked frames on a fully frozen backbone)."""
        return self._reuse

    def _remember(self, images: NDArray[Any], rows: NDArray[np.float32]) -> None:
        """Keep the images and their per-frame rows for the next step's reuse."""
        if self._reuse:
            self._last = (images.copy(), rows.copy())

    def features(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        """Per-frame rows (from `encode_frames`) -> features in the extractor's `readout` layout."""
        if not self._reuse or self.extractor.readout == "stack":
            return rows
        with torch.inference_mode():
            return self.extractor.read_out(torch.from_numpy(rows)).numpy()

    def invalidate(self) -> None:
        """Forget the features kept for reuse (after the frozen extractor changed: AdaBN, loaded state)."""
        self._last = None

    def _frame(self, obs: NDArray[Any], j: int) -> NDArray[Any]:
        return obs[3 * j : 3 * j + 3] if self.extractor.channels_first else obs[..., 3 * j : 3 * j + 3]

    def encode_frames(
        self,
        images: NDArray[Any],
        previous: list[int | None],
        last: tuple[NDArray[Any], NDArray[np.float32]] | None,
    ) -> NDArray[np.float32]:
        """Per-frame rows of `images` (`encode(images)` before the readout), computing each distinct frame
        once: with stacked frames, a step's observation shares all but its newest frame with the same
        env's previous one (`previous[m]`, its row in `last` = (images, rows) of the batch before, or
        None), and a reset observation repeats one frame. Frames are compared by value, so whatever the
        stacking did, a frame that differs is encoded. Without reuse (one frame, or unfrozen blocks) this
        is `encode(images)` itself."""
        if not self._reuse:
            return self.encode(images)
        k = self.extractor.n_frames
        width = self.extractor.pooled_features() // k
        kept = None if last is None else (last[0], last[1].reshape(-1, k, width))
        out = np.empty((len(images), k, width), dtype=np.float32)
        todo: list[tuple[int, int]] = []  # (observation, slot) to encode
        repeats: list[tuple[int, int]] = []  # slots that repeat the slot before them
        for m, obs in enumerate(images):
            prev = previous[m]
            shifted = (
                kept is not None
                and prev is not None
                and all(
                    np.array_equal(self._frame(obs, j), self._frame(kept[0][prev], j + 1))
                    for j in range(k - 1)
                )
            )
            for j in range(k):
                if shifted and j < k - 1:
                    out[m, j] = kept[1][prev, j + 1]  # type: ignore[index]  # shifted: both set
                elif j > 0 and np.array_equal(self._frame(obs, j), self._frame(obs, j - 1)):
                    repeats.append((m, j))
                else:
                    todo.append((m, j))
        if todo:  # a static scene can leave nothing new to encode
            frames = np.stack([self._frame(images[m], j) for m, j in todo])
            with torch.inference_mode(), _autocast(self.device):
                batch = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
                computed = self.extractor.frame_features(batch).float().cpu().numpy()
            for (m, j), row in zip(todo, computed, strict=True):
                out[m, j] = row
        for m, j in repeats:  # in slot order, so the slot before is already filled
            out[m, j] = out[m, j - 1]
        return out.reshape(len(images), k * width)

    def adapt_batchnorm(self, images: NDArray[Any] | torch.Tensor, batch_size: int = 64) -> int:
        """AdaBN on target ``images`` (shaped like the image space): ``agents.extractors.adapt_batchnorm``.

        Re-estimates the BatchNorm statistics of the frozen backbone; features computed before are stale.
        BatchNorm layers in unfrozen blocks belong to the policy's head and are not touched here.
        Returns the number of BatchNorm layers adapted.
        """
        batch = torch.as_tensor(images)
        if tuple(batch.shape[1:]) != self.image_space.shape:
            raise ValueError(f"expected images (N, *{self.image_space.shape}), got {tuple(batch.shape)}")
        self.invalidate()
        return adapt_batchnorm(self.extractor, batch, batch_size=batch_size)


def cache_frozen_features(
    venv: VecEnv, device: torch.device | str, **extractor_kwargs: Any
) -> tuple[VecFrozenFeatures, dict[str, Any]]:
    """Wrap ``venv`` in :class:`VecFrozenFeatures` and return it with the matching SB3 ``policy_kwargs``.

    ``policy_kwargs`` = ``{"features_extractor_class": CachedFeaturesHead, "features_extractor_kwargs":
    head_kwargs}``; add ``net_arch`` etc. to it as usual.
    """
    frozen, head_kwargs = split_extractor(venv.observation_space, **extractor_kwargs)
    policy_kwargs = {"features_extractor_class": CachedFeaturesHead, "features_extractor_kwargs": head_kwargs}
    return VecFrozenFeatures(venv, frozen, device), policy_kwargs


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast on CUDA (bf16 where supported, else fp16); nothing on CPU, where it is slow and lossy."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def stack(observations: list[Any]) -> Any:
    """One batch of observations: stacked arrays, or a Dict of stacked entries."""
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)
