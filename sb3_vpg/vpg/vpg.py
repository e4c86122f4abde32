"""
VPG, Vanilla Policy Gradient: the algorithm. Where its returns come from (the rollout's data path) is in
:mod:`sb3_vpg.common.buffers`; its speed work in the ``sb3_vpg.common.fast_*`` modules and
:mod:`sb3_vpg.common.cuda_graph`; the hardening for long runs it takes from ``ReliabilityMixin``
(:mod:`sb3_vpg.common.reliability`).
"""

import warnings
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_vpg.common.buffers import (
    MonteCarloBufferMixin,
    VecRecordEnvSteps,
    VPGDictRolloutBuffer,
    VPGRolloutBuffer,
    check_gae_lambda,
    check_incomplete_episodes,
)
from sb3_vpg.common.fast_buffers import stage_observations
from sb3_vpg.common.fast_update import CriticFeatures, RolloutBatches, extract_features
from sb3_vpg.common.reliability import ReliabilityMixin, check_log_probs, check_observations, check_returns
from sb3_vpg.hyperparams import register_atari_envs
from sb3_vpg.vpg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfVPG = TypeVar("SelfVPG", bound="VPG")

SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)


class VPG(ReliabilityMixin, OnPolicyAlgorithm):
    """
    Vanilla Policy Gradient: Monte-Carlo REINFORCE, optionally with a learned value baseline.

    Each rollout gives one gradient step on ``-mean(log pi(a_t|s_t) * w_t) - ent_coef * H``, where ``w_t`` is
    the discounted reward-to-go ``G_t`` of the episode (pure REINFORCE) or the advantage ``G_t - V(s_t)``
    (``use_baseline=True``, whose critic is regressed on ``G_t``), or its GAE-lambda advantage (``gae_lambda < 1``;
    Spinning Up's VPG uses 0.97), standardized over the rollout when ``normalize_returns``. In pure mode no value
    estimate enters the returns: samples whose episode the rollout did not see end have no return and are left out
    (``incomplete_episodes``).

    Papers: Williams (1992) https://doi.org/10.1007/BF00992696 ;
    Sutton et al. (2000) https://proceedings.neurips.cc/paper/1999/hash/464d828b85b0bed98e80ade0a5c43b0f-Abstract.html
    Spinning Up VPG: https://spinningup.openai.com/en/latest/algorithms/vpg.html
    Code: built on Stable-Baselines3's ``OnPolicyAlgorithm`` and A2C (https://github.com/DLR-RM/stable-baselines3)
    and sb3-contrib's TRPO (critic passes, https://github.com/Stable-Baselines-Team/stable-baselines3-contrib)

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function
        of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel).
        An episode must end inside the rollout for its samples to have a return (see ``incomplete_episodes``)
    :param batch_size: Minibatch size for the forward/backward passes of the single policy step (their gradients
        are accumulated, so the result equals the full-batch step while memory stays bounded), and the
        minibatch size of the critic passes. None: the whole rollout at once
    :param gamma: Discount factor, in (0, 1]
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation (only with ``use_baseline``)
    :param max_grad_norm: The maximum value for the gradient clipping, None for no clipping
    :param use_baseline: Weight the policy by ``G - V(s)`` with a critic trained on ``G`` (Spinning Up's VPG);
        time-limit truncations and, by default, the unfinished tail of the rollout then bootstrap with ``V``.
        False: pure REINFORCE, no value estimate anywhere
    :param gae_lambda: Factor of Generalized Advantage Estimation for the policy's weights, in [0, 1]: the weights
        are ``sum_k (gamma * gae_lambda)^k delta_{t+k}`` with ``delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)`` over
        the same episode ends and bootstraps as ``G``, whose target the critic keeps. 1 (default): ``G - V(s)``;
        0: the one-step TD error. Below 1 it needs ``use_baseline=True``
    :param normalize_returns: Standardize the weights (returns or advantages) over the used samples of the rollout
    :param reset_on_reward: A non-zero reward also ends the return, as each point of Pong ends a rally
    :param incomplete_episodes: Samples of an episode still running at the end of the rollout:
        ``"drop"`` (left out of the loss and normalization, default without baseline), ``"truncate"``
        (the partial reward sum is their return) or ``"bootstrap"`` (completed with ``V``, default with baseline)
    :param n_critic_updates: Extra passes of value-only regression on the rollout after the policy step
        (minibatches of ``batch_size``, critic parameters only, as in TRPO); ignored without ``use_baseline``
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use, a subclass of ``VPGRolloutBuffer`` or
        ``VPGDictRolloutBuffer``. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    # load() refuses a file without these settings as one saved by another algorithm (ReliabilityMixin)
    model_file_keys = ("use_baseline", "normalize_returns", "reset_on_reward")
    # load() restores the optimizer too, to resume training
    model_file_entries = ("policy.pth", "policy.optimizer.pth")
    rollout_buffer: VPGRolloutBuffer | VPGDictRolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int | None = None,
        gamma: float = 0.99,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        use_baseline: bool = False,
        gae_lambda: float = 1.0,
        normalize_returns: bool = True,
        reset_on_reward: bool = False,
        incomplete_episodes: str | None = None,
        n_critic_updates: int = 5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if isinstance(policy, str) and policy not in self.policy_aliases:
            raise ValueError(
                f"policy {policy!r} is not one of VPG's policies: {', '.join(self.policy_aliases)} (or a policy class)"
            )
        if isinstance(env, str):
            register_atari_envs()  # gymnasium 1.x knows ALE's ids (PongNoFrameskip-v4) only once they are registered
            env = maybe_make_env(env, verbose)
        if isinstance(env, gym.Env):  # checked before SB3 wraps it: a DummyVecEnv fails obscurely on Text spaces
            _check_spaces(env.observation_space, env.action_space)
        if incomplete_episodes is None:
            incomplete_episodes = "bootstrap" if use_baseline else "drop"
        _check_hyperparameters(
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_baseline=use_baseline,
            gae_lambda=gae_lambda,
            incomplete_episodes=incomplete_episodes,
            n_critic_updates=n_critic_updates,
        )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,  # stored as self.gae_lambda (saved with the model) and given to the buffer
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=None,  # checked below, with a TypeError instead of SB3's assert
        )
        if env is not None:
            _check_spaces(self.observation_space, self.action_space)

        self.batch_size = batch_size
        self.use_baseline = use_baseline
        self.normalize_returns = normalize_returns
        self.reset_on_reward = reset_on_reward
        self.incomplete_episodes = incomplete_episodes
        self.n_critic_updates = n_critic_updates

        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        # Normalizing needs at least two samples: the std of one is 0 and every weight would be 0
        if self.normalize_returns and self.n_steps * self.n_envs < 2:
            raise ValueError(
                "normalize_returns=True needs n_steps * n_envs > 1 (the weights are standardized over the rollout), "
                f"got n_steps={self.n_steps} and n_envs={self.n_envs}"
            )
        if self.batch_size is not None and self.batch_size > self.n_steps * self.n_envs:
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the rollout, n_steps * n_envs = {self.n_steps} * {self.n_envs} "
                f"= {self.n_steps * self.n_envs}: every update takes the rollout as one batch",
                UserWarning,
            )
        if self.rollout_buffer_class is None:
            is_dict = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = VPGDictRolloutBuffer if is_dict else VPGRolloutBuffer
        if not issubclass(self.rollout_buffer_class, MonteCarloBufferMixin):
            raise TypeError(
                "rollout_buffer_class must subclass VPGRolloutBuffer or VPGDictRolloutBuffer "
                f"(it computes the Monte-Carlo returns), got {self.rollout_buffer_class.__name__}"
            )
        # The buffer computes the returns, so it takes VPG's return settings beside the user's kwargs
        self.rollout_buffer_kwargs = {
            **self.rollout_buffer_kwargs,
            "use_baseline": self.use_baseline,
            "reset_on_reward": self.reset_on_reward,
            "incomplete_episodes": self.incomplete_episodes,
        }
        super()._setup_model()
        # Pure REINFORCE never reads V: rollouts skip the critic (policies from sb3_vpg.vpg.policies)
        self.policy.use_critic = self.use_baseline  # type: ignore[assignment]

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        # Overridden to check the reset observations: no env step returns them, so VecRecordEnvSteps does not see them
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        check_observations(self._last_obs, self.num_timesteps, "a reset observation")  # type: ignore[arg-type]
        return total_timesteps, callback

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        # Overridden to run SB3's collection on the env wrapped by VecRecordEnvSteps, which hands the buffer the rewards
        # and episode ends the returns are made of (sb3_vpg.common.buffers), and to check the rollout before the update
        assert isinstance(rollout_buffer, MonteCarloBufferMixin)
        env = stage_observations(env, rollout_buffer, self._last_obs)  # type: ignore[arg-type]
        if not super().collect_rollouts(
            VecRecordEnvSteps(env, rollout_buffer, self.num_timesteps), callback, rollout_buffer, n_rollout_steps
        ):
            return False
        check_returns(rollout_buffer.returns[rollout_buffer.has_return], self.num_timesteps)
        check_log_probs(rollout_buffer.log_probs, self.num_timesteps)
        return True

    def train(self) -> None:
        """
        One REINFORCE step on the rollout:
        ``loss = -mean(log pi(a|s) * w) - ent_coef * entropy (+ vf_coef * MSE(V(s), G))``,
        ``w`` being ``G`` (or, with a baseline, ``G - V(s)`` or the GAE advantage), standardized over the samples
        that have a return.
        The gradients of the ``batch_size`` minibatches are accumulated, each weighted by its share of the
        samples, so the single optimizer step equals the full-batch step. With a baseline, ``n_critic_updates``
        passes of value regression on ``G`` follow, as in TRPO.
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        buffer = self.rollout_buffer
        used = buffer.has_return
        n_used = int(used.sum())
        self.logger.record("train/used_fraction", n_used / used.size)
        if n_used == 0:
            warnings.warn(
                f"No episode ended within the rollout of n_steps={self.n_steps}: there is no Monte-Carlo return, "
                "so the update is skipped. Increase n_steps, or set incomplete_episodes='truncate' or use_baseline=True.",
                UserWarning,
            )
            return
        returns, weights = buffer.returns[used], buffer.advantages[used]
        weight_mean, weight_std = (weights.mean(), weights.std()) if self.normalize_returns else (0.0, 1.0)
        explained_var = explained_variance(buffer.values[used], returns) if self.use_baseline else None
        batches = RolloutBatches(buffer, self.batch_size)

        self.policy.optimizer.zero_grad()
        policy_losses, entropy_losses, value_losses = [], [], []
        for rollout_data in batches:
            share = len(rollout_data.returns) / n_used
            actions = rollout_data.actions
            if isinstance(self.action_space, spaces.Discrete):
                # Convert discrete action from float to long
                actions = rollout_data.actions.long().flatten()
            if self.use_baseline:
                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
            else:  # nothing uses the critic: skip its forward pass
                distribution = self.policy.get_distribution(rollout_data.observations)
                log_prob, entropy = distribution.log_prob(actions), distribution.entropy()

            weight = (rollout_data.advantages - weight_mean) / (weight_std + 1e-8)
            policy_loss = -(log_prob * weight).mean()
            # Approximate entropy when no analytical form
            entropy_loss = -th.mean(-log_prob if entropy is None else entropy)
            loss = policy_loss + self.ent_coef * entropy_loss
            if self.use_baseline:
                value_loss = F.mse_loss(rollout_data.returns, values.flatten())
                loss = loss + self.vf_coef * value_loss
                value_losses.append(share * value_loss.item())

            (share * loss).backward()
            policy_losses.append(share * policy_loss.item())
            entropy_losses.append(share * entropy_loss.item())

        max_norm = float("inf") if self.max_grad_norm is None else self.max_grad_norm
        grad_norm = th.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
        self.policy.optimizer.step()
        self._n_updates += 1

        fit_critic = self.use_baseline and self.n_critic_updates > 0
        critic_features = CriticFeatures(self.policy, batches, self.batch_size) if fit_critic else None
        approx_kl = self._approx_kl(batches, n_used, critic_features)
        if critic_features is not None:
            # Regression of V on G that moves the critic's own layers only (its features: see CriticFeatures)
            for _ in range(self.n_critic_updates):
                for features, critic_returns in critic_features:
                    values_pred = self.policy.value_net(self.policy.mlp_extractor.forward_critic(features)).flatten()
                    self.policy.optimizer.zero_grad()  # also clears the actor's gradients, so the optimizer skips it
                    F.mse_loss(critic_returns, values_pred).backward()
                    self.policy.optimizer.step()

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/policy_gradient_loss", sum(policy_losses))
        self.logger.record("train/entropy_loss", sum(entropy_losses))
        self.logger.record("train/approx_kl", approx_kl)
        self.logger.record("train/grad_norm", grad_norm.item())
        self.logger.record("train/return_mean", float(returns.mean()))
        self.logger.record("train/return_std", float(returns.std()))
        if self.use_baseline:
            self.logger.record("train/value_loss", sum(value_losses))
            self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def _approx_kl(self, batches: RolloutBatches, n_used: int, critic_features: CriticFeatures | None) -> float:
        """
        KL(pi_old || pi_new) over the used samples, after the step (PPO's low-variance estimator). The pass hands the
        actor's features to ``critic_features``, whose critic passes reuse them when the extractor is shared.
        """
        policy = self.policy
        total = 0.0
        with th.no_grad():
            for rollout_data in batches:
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = rollout_data.actions.long().flatten()
                features = extract_features(policy, rollout_data.observations, policy.pi_features_extractor)
                distribution = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(features))
                log_ratio = distribution.log_prob(actions) - rollout_data.old_log_prob
                total += th.sum(th.exp(log_ratio) - 1 - log_ratio).item()
                if critic_features is not None:
                    critic_features.keep(features, rollout_data.returns)
        return total / n_used

    def learn(
        self: SelfVPG,
        total_timesteps: int = 1_000_000,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "VPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfVPG:
        """
        Train for ``total_timesteps`` environment steps (default: 1M, an Atari-scale run).
        See ``OnPolicyAlgorithm.learn`` for the other arguments.
        """
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def _check_hyperparameters(
    learning_rate: float | Schedule,
    n_steps: int,
    batch_size: int | None,
    gamma: float,
    ent_coef: float,
    vf_coef: float,
    max_grad_norm: float | None,
    use_baseline: bool,
    gae_lambda: float,
    incomplete_episodes: str,
    n_critic_updates: int,
) -> None:
    """
    Raise a TypeError naming the first hyperparameter that is not a number (a string from a config file, say),
    or a ValueError naming the first out of its range (NaN is out of every range).
    """
    numbers = {"gamma": gamma, "ent_coef": ent_coef, "vf_coef": vf_coef, "max_grad_norm": max_grad_norm}
    if not callable(learning_rate):
        numbers["learning_rate"] = learning_rate
    for name, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)):
            raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not callable(learning_rate) and not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0 (or a schedule), got {learning_rate}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if not ent_coef >= 0:
        raise ValueError(f"ent_coef must be >= 0, got {ent_coef}")
    if not vf_coef >= 0:
        raise ValueError(f"vf_coef must be >= 0, got {vf_coef}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm}")
    check_gae_lambda(gae_lambda, use_baseline)
    check_incomplete_episodes(incomplete_episodes, use_baseline)
    if isinstance(n_critic_updates, bool) or not isinstance(n_critic_updates, int | np.integer) or n_critic_updates < 0:
        raise ValueError(f"n_critic_updates must be an integer >= 0, got {n_critic_updates!r}")


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise a TypeError for spaces SB3's policies and distributions cannot handle."""
    if not isinstance(action_space, SUPPORTED_ACTION_SPACES):
        names = ", ".join(space.__name__ for space in SUPPORTED_ACTION_SPACES)
        raise TypeError(f"VPG supports the action spaces {names}; the env's action_space is {action_space}")
    sub_spaces = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    if not isinstance(observation_space, SUPPORTED_OBSERVATION_SPACES) or any(
        isinstance(space, spaces.Dict) or not isinstance(space, SUPPORTED_OBSERVATION_SPACES) for space in sub_spaces
    ):
        raise TypeError(
            "VPG supports Box, Discrete, MultiDiscrete, MultiBinary and (non-nested) Dict observation spaces; "
            f"the env's observation_space is {observation_space}"
        )
