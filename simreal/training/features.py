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

from agents.extractors import BackboneExtractor, CachedFeaturesHead, adapt_batchnorm


def split_extractor(
    observation_space: spaces.Space[Any], **extractor_kwargs: Any
) -> tuple[BackboneExtractor, dict[str, Any]]:
    """The frozen half of ``BackboneExtractor(observation_space, **extractor_kwargs)`` and the head's kwargs.

    Returns ``(frozen, head_kwargs)``: ``frozen`` is the extractor in eval mode with every parameter
    ``requires_grad=False`` (only its ``backbone_features`` is used), ``head_kwargs`` the
    ``features_extractor_kwargs`` of :class:`CachedFeaturesHead` (the same spec plus ``image_shape``).
    Raises ValueError for a spec with nothing frozen. A random init (``weights=None``) cannot be rebuilt
    from the spec: whoever saves the policy must save ``frozen.state_dict()`` too (simreal's artifacts do).
    """
    shape = observation_space.shape
    if not isinstance(observation_space, spaces.Box) or shape is None or len(shape) != 3:
        raise ValueError(f"cached features need an image Box (C,H,W) or (H,W,C), got {observation_space}")
    if not extractor_kwargs.get("frozen", True):
        raise ValueError("frozen=False: nothing to cache; use BackboneExtractor in the policy instead")
    frozen = BackboneExtractor(observation_space, **extractor_kwargs)
    if not frozen.frozen_blocks:
        raise ValueError(f"unfreeze_last={len(frozen.trainable_blocks)} leaves no frozen block to cache")
    frozen.requires_grad_(False).eval()
    image_shape = tuple(int(n) for n in (shape if frozen.channels_first else (shape[2], shape[0], shape[1])))
    return frozen, {"image_shape": image_shape, **extractor_kwargs}


class VecFrozenFeatures(VecEnvWrapper):
    """Replace image observations by the frozen features of ``extractor``, computed on ``device``.

    :param venv: vec env of uint8 images, HWC or CHW, 3k channels (what ``extractor`` was built for).
    :param extractor: a ``BackboneExtractor`` with frozen blocks (from :func:`split_extractor`); only its
        ``backbone_features`` runs, so SB3's preprocessing is reproduced: HWC -> CHW, uint8 / 255, then
        the backbone's own normalization and resize.
    :param device: where the backbone runs; decided once by the caller (``simreal.training.device``).

    Each call runs one batch: the ``num_envs`` observations plus any terminal observations, under
    ``torch.inference_mode``, ``channels_last``, and autocast on CUDA (bf16, else fp16). With stacked
    frames and a fully frozen backbone, only frames not seen before are encoded: a step's observation
    shares all but its newest frame with the previous one (their features are reused), and a reset
    observation repeats one frame (encoded once) - k times fewer backbone passes with k stacked frames.
    Features come back as float32 numpy: the numpy <-> torch boundary is here and nowhere else.
    ``feature_space`` is the new observation space (typed as a Box), ``extractor`` the frozen module.
    """

    def __init__(self, venv: VecEnv, extractor: BackboneExtractor, device: torch.device | str = "cpu"):
        space = venv.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 3:
            raise ValueError(f"VecFrozenFeatures needs image observations (a 3-d Box), got {space}")
        channels = space.shape[0] if extractor.channels_first else space.shape[2]
        if channels != 3 * extractor.n_frames:
            raise ValueError(
                f"observation space {space.shape} does not fit the extractor ({extractor.n_frames} frames, "
                f"{'CHW' if extractor.channels_first else 'HWC'})"
            )
        if not extractor.frozen_blocks:
            raise ValueError("the extractor has no frozen block: nothing to cache")
        self.device = torch.device(device)
        self.extractor = extractor.to(self.device).eval()
        self.image_space = space
        # Frame-by-frame reuse needs features that are per-frame rows (a fully frozen, pooled backbone).
        self._reuse = extractor.n_frames > 1 and not extractor.trainable_blocks
        self._last: tuple[NDArray[Any], NDArray[np.float32]] | None = None
        features = self.encode(np.zeros((1, *space.shape), dtype=space.dtype))
        self.feature_space = spaces.Box(-np.inf, np.inf, features.shape[1:], np.float32)
        super().__init__(venv, observation_space=self.feature_space)

    def encode(self, images: NDArray[Any]) -> NDArray[np.float32]:
        """Frozen features (N, *feature shape) of a batch of observations shaped like the image space."""
        if images.shape[1:] != self.image_space.shape:
            raise ValueError(f"expected images (N, *{self.image_space.shape}), got {images.shape}")
        with torch.inference_mode(), _autocast(self.device):
            batch = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
            features = self.extractor.backbone_features(batch)
        return features.float().cpu().numpy()

    def reset(self) -> NDArray[np.float32]:
        images = np.asarray(self.venv.reset())
        return self._remember(images, self._encode_reusing(images, [None] * self.num_envs))

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        batch = np.asarray(obs)
        # A finished env's new observation starts an episode; its terminal one continues the last step.
        previous: list[int | None] = [None if i in ended else i for i in range(self.num_envs)]
        if ended:
            batch = np.concatenate([batch, np.stack([infos[i]["terminal_observation"] for i in ended])])
            previous += ended
        features = self._encode_reusing(batch, previous)
        for row, i in enumerate(ended, start=self.num_envs):
            infos[i]["terminal_observation"] = features[row]
        return self._remember(batch[: self.num_envs], features[: self.num_envs]), rewards, dones, infos

    # ----- frames already encoded are not encoded again -----

    def _remember(self, images: NDArray[Any], features: NDArray[np.float32]) -> NDArray[np.float32]:
        if self._reuse:
            self._last = (images.copy(), features.copy())
        return features

    def invalidate(self) -> None:
        """Forget the features kept for reuse (after the frozen extractor changed: AdaBN, loaded state)."""
        self._last = None

    def _frame(self, obs: NDArray[Any], j: int) -> NDArray[Any]:
        return obs[3 * j : 3 * j + 3] if self.extractor.channels_first else obs[..., 3 * j : 3 * j + 3]

    def _encode_reusing(self, images: NDArray[Any], previous: list[int | None]) -> NDArray[np.float32]:
        """`encode(images)`, computing each distinct frame once: with stacked frames, a step's observation
        shares all but its newest frame with the env's previous one (`previous[m]`, an env index, or
        None), and a reset observation repeats one frame. Frames are compared by value, so whatever the
        stacking did, a frame that differs is encoded. Needs a fully frozen backbone (pooled per frame)."""
        if not self._reuse:
            return self.encode(images)
        k = self.extractor.n_frames
        width = self.extractor.pooled_features() // k
        kept = None if self._last is None else (self._last[0], self._last[1].reshape(-1, k, width))
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
