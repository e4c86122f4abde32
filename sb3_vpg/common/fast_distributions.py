"""
Speed work on SB3's action distributions, with the same distributions and the same log-probabilities and entropies.

- Unvalidated distributions: torch's argument validation, run each time a distribution is built or evaluates
  ``log_prob``, makes a pass over its inputs and, on GPU, a device synchronization at every rollout step.
  :func:`torch_validation_off` and :func:`unvalidated` skip it; non-finite policy outputs are caught by the NaN
  guards instead (``sb3_vpg.common.reliability.finite_checks.check_log_probs``).
- The Gumbel-max sampler: Discrete and MultiDiscrete actions drawn by :func:`gumbel_max_sample` instead of
  ``torch.multinomial`` (:class:`GumbelCategoricalDistribution`, :class:`GumbelMultiCategoricalDistribution`). It is
  the same distribution, drawn from other random numbers: a seed gives other actions than with SB3's sampler.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution, MultiCategoricalDistribution


@contextmanager
def torch_validation_off() -> Iterator[None]:
    """Build ``torch.distributions`` objects without argument validation inside the block (restored after)."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def unvalidated(distribution: Distribution) -> Distribution:
    """Build-time validation is off (see :func:`torch_validation_off`); this turns off that of ``log_prob`` too."""
    inner = distribution.distribution
    for torch_distribution in inner if isinstance(inner, list) else [inner]:
        torch_distribution._validate_args = False
    return distribution


def gumbel_max_sample(log_probs: th.Tensor) -> th.Tensor:
    """
    One draw of the categorical distribution whose (possibly unnormalized) log-probabilities are the last axis of
    ``log_probs``, by the Gumbel-max trick: ``argmax(log_probs + G)`` with ``G = -log(-log(U))``, ``U`` uniform.

    It draws from the same distribution as ``torch.multinomial``, which ``torch.distributions.Categorical.sample``
    calls and which first checks its input with extra passes and, on GPU, a device synchronization; here one
    elementwise pass and an argmax remain. Actions of probability 0 (log-probability -inf) are never drawn.

    Reference: Gumbel (1954); Maddison, Tarlow & Minka (2014), "A* Sampling".

    :param log_probs: log-probabilities, shape ``(..., n_actions)``
    :return: the drawn action indices (int64), shape ``(...)``
    """
    # log_probs + G = log_probs - log(-log U), built in place in one buffer (it runs at every rollout step);
    # U = 0 gives G = -inf, never drawn
    return th.argmax(log_probs - th.rand_like(log_probs).log_().neg_().log_(), dim=-1)


class GumbelCategoricalDistribution(CategoricalDistribution):
    """SB3's ``CategoricalDistribution`` (Discrete actions), sampled by :func:`gumbel_max_sample`."""

    def sample(self) -> th.Tensor:
        return gumbel_max_sample(self.distribution.logits)


class GumbelMultiCategoricalDistribution(MultiCategoricalDistribution):
    """SB3's ``MultiCategoricalDistribution`` (MultiDiscrete actions), sampled by :func:`gumbel_max_sample`."""

    def sample(self) -> th.Tensor:
        return th.stack([gumbel_max_sample(part.logits) for part in self.distribution], dim=1)


#: How a policy draws Discrete and MultiDiscrete actions (the ``categorical_sampler`` policy argument).
CATEGORICAL_SAMPLERS = ("gumbel", "multinomial")


def gumbel_sampled(distribution: Distribution) -> Distribution:
    """The Gumbel-max version of SB3's categorical distributions; any other distribution as it is."""
    if type(distribution) is CategoricalDistribution:
        return GumbelCategoricalDistribution(distribution.action_dim)
    if type(distribution) is MultiCategoricalDistribution:
        return GumbelMultiCategoricalDistribution(distribution.action_dims)
    return distribution
