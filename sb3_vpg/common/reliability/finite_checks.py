"""
NaN guards: checks that stop training with a clear error before bad numbers reach the weights: non-finite rewards,
observations and returns from the environment, non-finite action log-probabilities from the policy, and parameters
that an optimizer step made non-finite.

Each check is cheap next to the env step it guards: a few ``np.isfinite`` over arrays of ``n_envs`` rows,
skipped for integer observations (images, discrete spaces), which cannot hold NaN or inf.
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th
from torch.utils.hooks import RemovableHandle

#: Largest magnitude the buffer's float32 arrays hold; a float64 reward beyond it would become inf there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_rewards(rewards: np.ndarray, step: int) -> None:
    """Raise a ValueError naming the first env whose reward is NaN, inf, or too large for float32."""
    in_range = np.abs(rewards) <= FLOAT32_MAX  # False for NaN too
    if not in_range.all():
        env_index = int(np.flatnonzero(~in_range)[0])
        reward = np.asarray(rewards)[env_index]
        beyond = ", beyond float32's range" if np.isfinite(reward) else ""
        raise ValueError(
            f"Env {env_index} returned a non-finite reward ({reward}{beyond}) at step {step}: "
            "the algorithm cannot learn from it. Check the environment (or clip its rewards)."
        )


def check_observations(observations: np.ndarray | dict[str, np.ndarray], step: int, what: str = "an observation") -> None:
    """
    Raise a ValueError naming the env (and the key of a Dict observation) of the first NaN or inf observation.

    :param observations: a VecEnv's observations, with the env index as first axis (or a dict of those)
    :param step: the number of env steps so far, for the message
    :param what: what the observations are, for the message
    """
    if isinstance(observations, dict):
        for key, obs in observations.items():
            _check_observation_array(obs, step, what, f" (key {key!r})")
    else:
        _check_observation_array(observations, step, what, "")


def _check_observation_array(obs: np.ndarray, step: int, what: str, where: str) -> None:
    if obs.dtype.kind != "f" or np.isfinite(obs).all():  # integers and booleans are always finite
        return
    finite = np.isfinite(obs).reshape(len(obs), -1).all(axis=1)
    env_index = int(np.flatnonzero(~finite)[0])
    raise ValueError(
        f"Env {env_index} returned {what} with NaN or inf values{where} at step {step}: "
        "the algorithm cannot learn from it. Check the environment (or its observation wrappers)."
    )


def check_returns(returns: np.ndarray, step: int) -> None:
    """Raise a ValueError when the Monte-Carlo returns of a rollout overflow float32 (finite rewards summed to inf)."""
    if not np.all(np.isfinite(returns)):
        raise ValueError(
            f"The discounted returns of the rollout ending at step {step} are not finite: the rewards sum past "
            f"float32's range (about {FLOAT32_MAX:.1e}). Scale the rewards down (e.g. VecNormalize(norm_reward=True))."
        )


def check_log_probs(log_probs: np.ndarray, step: int) -> None:
    """
    Raise a ValueError when an action of the rollout has a NaN or inf log-probability: the policy's output was
    not finite, so the update must not use the rollout. It matters for policies whose action distributions skip
    torch's argument validation (VPG's), which would otherwise raise at the step itself.
    """
    if not np.all(np.isfinite(log_probs)):
        raise ValueError(
            f"The policy gave non-finite action probabilities in the rollout ending at step {step}, although its "
            "parameters and the observations were finite: its outputs overflowed. Scale the observations down "
            "(e.g. VecNormalize) or lower the learning rate."
        )


def check_parameters(parameters: Iterable[th.Tensor], step: int) -> None:
    """Raise a ValueError when NaN or inf is in the parameters (one device sync for all of them)."""
    parameters = list(parameters)
    if not parameters:
        return
    # A tensor's sum is finite when it holds no NaN or inf, and costs a fraction of the element-wise check (which
    # allocates a flag per element): that check decides only when a sum is not finite (or finite values summed
    # past the float range)
    with th.no_grad():
        if bool(th.isfinite(th.stack([param.sum().float() for param in parameters])).all()):
            return
        finite = bool(th.stack([th.isfinite(param).all() for param in parameters]).all())
    if not finite:
        raise ValueError(
            f"An optimizer step of the update at step {step} left NaN or inf in the policy's parameters, although "
            "the rewards, observations and returns were finite: the update diverged. Lower the learning rate, keep "
            "max_grad_norm set, or scale the observations (e.g. VecNormalize). No checkpoint holds these parameters."
        )


def watch_parameters(optimizer: th.optim.Optimizer, get_step: Callable[[], int]) -> RemovableHandle:
    """
    Check the optimizer's parameters after each of its steps (:func:`check_parameters`), so that a diverged
    update stops training at once, before a forward pass on the broken parameters or a checkpoint. A watch
    left by an earlier call (training that ended with an exception) is replaced.

    :param optimizer: the policy's optimizer
    :param get_step: returns the number of env steps so far, for the message
    :return: the handle that removes the watch
    """
    previous = getattr(optimizer, "_sb3_vpg_watch", None)
    if previous is not None:
        previous.remove()

    def check(optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
        check_parameters((param for group in optimizer.param_groups for param in group["params"]), get_step())

    handle = optimizer.register_step_post_hook(check)
    optimizer._sb3_vpg_watch = handle  # type: ignore[attr-defined]
    return handle


@contextmanager
def parameters_watched(optimizer: th.optim.Optimizer, get_step: Callable[[], int]) -> Iterator[None]:
    """Inside the block, the optimizer's parameters are checked after each of its steps (:func:`watch_parameters`)."""
    handle = watch_parameters(optimizer, get_step)
    try:
        yield
    finally:
        handle.remove()
