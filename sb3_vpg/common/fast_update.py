"""
Speed work on VPG's update that changes none of its numbers: how the passes of one update read the rollout.

- :class:`RolloutBatches`: with ``batch_size=None`` the rollout is copied to the device once, and the policy step,
  the KL estimate and the critic passes all read that copy.
- :class:`CriticFeatures`: the critic passes move the critic's own layers only, so a features extractor shared with
  the actor (a CNN) gives the same features in every pass: they are computed once, by the KL estimate's pass after
  the policy step, and reused.
"""

from collections.abc import Generator, Iterator
from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_vpg.common.buffers import MonteCarloBufferMixin


class RolloutBatches:
    """
    The samples of a rollout that have a return, in the buffer's order, ``batch_size`` at a time, for every pass of
    one update. With ``batch_size=None`` they are one batch, copied to the device by the first pass only.

    :param rollout_buffer: the complete rollout
    :param batch_size: samples per batch, or None for all of them
    """

    def __init__(self, rollout_buffer: MonteCarloBufferMixin, batch_size: int | None) -> None:
        self.rollout_buffer = rollout_buffer
        self.batch_size = batch_size
        self._whole: Any = None

    def __iter__(self) -> Iterator[Any]:
        if self.batch_size is not None:
            return iter(self.rollout_buffer.get(self.batch_size))
        if self._whole is None:
            self._whole = next(self.rollout_buffer.get())
        return iter([self._whole])


def extract_features(policy: ActorCriticPolicy, obs: Any, features_extractor: th.nn.Module) -> th.Tensor:
    """``features_extractor``'s output for ``obs`` (preprocessed as the policy does), whether or not the policy shares
    it."""
    # The extraction that ActorCriticPolicy's own methods call (through super()), which runs the given extractor;
    # ActorCriticPolicy's extract_features runs both when they are not shared
    return super(ActorCriticPolicy, policy).extract_features(obs, features_extractor)  # type: ignore[arg-type]


class CriticFeatures:
    """
    The critic passes' inputs: ``(features, returns)`` of the samples that have a return, ``batch_size`` at a time, in
    the buffer's order, once per iteration.

    A features extractor shared with the actor is not run again: the KL estimate's pass hands its output to
    :meth:`keep` (kept on the device with ``batch_size=None``, on the host when ``batch_size`` bounds the device
    memory), and every critic pass reads those features. A critic with an extractor of its own runs it, with gradient,
    in every pass, and trains it.

    :param policy: the policy
    :param batches: the rollout's batches
    :param batch_size: samples per critic minibatch, or None for all of them
    """

    def __init__(self, policy: ActorCriticPolicy, batches: RolloutBatches, batch_size: int | None) -> None:
        self.policy = policy
        self.batches = batches
        self.batch_size = batch_size
        self.shared = policy.share_features_extractor
        self._store = policy.device if batch_size is None else th.device("cpu")
        self._kept: list[tuple[th.Tensor, th.Tensor]] = []

    def keep(self, features: th.Tensor, returns: th.Tensor) -> None:
        """Keep the actor's features of one batch, and the batch's returns, when the critic shares the extractor."""
        if self.shared:
            self._kept.append((features.to(self._store), returns.to(self._store)))

    def __iter__(self) -> Generator[tuple[th.Tensor, th.Tensor], None, None]:
        if not self.shared:
            for rollout_data in self.batches:
                yield (
                    extract_features(self.policy, rollout_data.observations, self.policy.vf_features_extractor),
                    rollout_data.returns,
                )
            return
        if len(self._kept) > 1:  # one tensor of all the kept batches, cut again at each pass
            self._kept = [(th.cat([features for features, _ in self._kept]), th.cat([returns for _, returns in self._kept]))]
        features, returns = self._kept[0]
        size = self.batch_size or len(returns)
        device = self.policy.device
        for start in range(0, len(returns), size):
            yield features[start : start + size].to(device), returns[start : start + size].to(device)
