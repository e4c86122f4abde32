import io
import pathlib
import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, ConvertCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn
from torch.nn import functional as F

from sb3_vpg.common.buffers import MonteCarloBufferMixin, VPGDictRolloutBuffer, VPGRolloutBuffer, check_incomplete_episodes
from sb3_vpg.common.checks import check_log_probs, check_observations, check_returns, check_rewards, watch_parameters
from sb3_vpg.common.io import check_model_file, get_rng_state, set_rng_state
from sb3_vpg.common.workers import WorkerGuard
from sb3_vpg.vpg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfVPG = TypeVar("SelfVPG", bound="VPG")

SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)


class _RecordEnvSteps(BaseCallback):
    """
    Hands each step's rewards and episode ends to the buffer before SB3 adds ``gamma * V(s_T)`` to the
    rewards of truncated episodes. It also stops training with a ValueError on a non-finite reward,
    observation or return before it reaches the weights, and on an optimizer step that leaves non-finite
    parameters, before anything (a checkpoint) saves them (see ``sb3_vpg.common.checks``).
    """

    def _on_training_start(self) -> None:
        check_observations(self.model._last_obs, self.num_timesteps, "a reset observation")  # type: ignore[arg-type]
        self._watch = watch_parameters(self.model.policy.optimizer, lambda: self.model.num_timesteps)

    def _on_step(self) -> bool:
        rewards = self.locals["rewards"]
        check_rewards(rewards, self.num_timesteps)
        check_observations(self.locals["new_obs"], self.num_timesteps)
        self.model.rollout_buffer.record_step(rewards, self.locals["dones"])
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        check_returns(buffer.returns[buffer.has_return], self.num_timesteps)
        check_log_probs(buffer.log_probs, self.num_timesteps)

    def _on_training_end(self) -> None:
        self._watch.remove()


class _StageObservations(VecEnvWrapper):
    """
    The training env as one rollout's collection sees it: once the actions are sent (``step_async``), the
    observation they were chosen from is copied into the rollout buffer while the envs step, instead of after
    ``step_wait`` (SB3's ``add``). With a ``SubprocVecEnv`` the copy overlaps the workers' steps.
    """

    def __init__(self, venv: VecEnv, model: "VPG", rollout_buffer: MonteCarloBufferMixin) -> None:
        super().__init__(venv)
        self.model = model
        self.rollout_buffer = rollout_buffer

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)
        self.rollout_buffer.stage_observation(self.model._last_obs)

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()

    def reset(self) -> VecEnvObs:
        return self.venv.reset()


class VPG(OnPolicyAlgorithm):
    """
    Vanilla Policy Gradient: Monte-Carlo REINFORCE, optionally with a learned value baseline.

    Each rollout gives one gradient step on ``-mean(log pi(a_t|s_t) * w_t) - ent_coef * H``, where ``w_t`` is
    the discounted reward-to-go ``G_t`` of the episode (pure REINFORCE) or the advantage ``G_t - V(s_t)``
    (``use_baseline=True``, Spinning Up's VPG, whose critic is regressed on ``G_t``), standardized over the
    rollout when ``normalize_returns``. In pure mode no value estimate enters the returns: samples whose
    episode the rollout did not see end have no return and are left out (``incomplete_episodes``).

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
            incomplete_episodes=incomplete_episodes,
            n_critic_updates=n_critic_updates,
        )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=1.0,  # unused: the returns are Monte-Carlo
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
        self._full_batch: Any = None  # device copy of the rollout during train() when batch_size is None

        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        # Normalizing needs at least two samples: the std of one is 0 and every weight would be 0
        if self.normalize_returns and self.n_steps * self.n_envs < 2:
            raise ValueError(
                "normalize_returns=True needs n_steps * n_envs > 1 (the weights are standardized over the rollout), "
                f"got n_steps={self.n_steps} and n_envs={self.n_envs}"
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

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        # Overridden to put _RecordEnvSteps first: it must see the rewards before SB3's truncation bootstrap
        callbacks = [] if callback is None else callback if isinstance(callback, list) else [callback]
        callbacks = [_RecordEnvSteps()] + [cb if isinstance(cb, BaseCallback) else ConvertCallback(cb) for cb in callbacks]
        return super()._init_callback(callbacks, progress_bar)

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        # Overridden only to run SB3's collection on the env wrapped by _StageObservations (buffer writes overlap env steps)
        # A VecEnv with a step() of its own is stepped as it is, by SB3's loop
        if type(env).step is VecEnv.step and isinstance(rollout_buffer, MonteCarloBufferMixin):
            env = _StageObservations(env, self, rollout_buffer)
        return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    def train(self) -> None:
        """
        One REINFORCE step on the rollout:
        ``loss = -mean(log pi(a|s) * w) - ent_coef * entropy (+ vf_coef * MSE(V(s), G))``,
        ``w`` being ``G`` (or ``G - V(s)`` with a baseline), standardized over the samples that have a return.
        The gradients of the ``batch_size`` minibatches are accumulated, each weighted by its share of the
        samples, so the single optimizer step equals the full-batch step.
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

        self._full_batch = None
        self.policy.optimizer.zero_grad()
        policy_losses, entropy_losses, value_losses = [], [], []
        for rollout_data in self._minibatches():
            share = len(rollout_data.returns) / n_used
            actions = self._as_policy_actions(rollout_data.actions)
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

        approx_kl, kept = self._approx_kl(n_used)
        if self.use_baseline:
            self._fit_critic(kept)
        self._full_batch = None  # free the device copy of the rollout

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

    def _minibatches(self) -> Any:
        """
        The samples that have a return, ``batch_size`` at a time. With ``batch_size=None`` the whole batch is
        copied to the device once per rollout and reused by the KL estimate and the critic passes.
        """
        if self.batch_size is not None:
            return self.rollout_buffer.get(self.batch_size)
        if self._full_batch is None:
            self._full_batch = next(self.rollout_buffer.get())
        return [self._full_batch]

    def _as_policy_actions(self, actions: th.Tensor) -> th.Tensor:
        # Convert discrete action from float to long
        return actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else actions

    def _approx_kl(self, n_used: int) -> tuple[float, tuple[th.Tensor, th.Tensor] | None]:
        """
        KL(pi_old || pi_new) over the used samples, after the step (PPO's low-variance estimator).

        With a baseline and a features extractor shared with the actor, this pass also keeps the features and
        returns of the samples: the critic passes leave that extractor as it is, so they reuse these features
        instead of running it (a CNN) once per pass. They are kept on the host when ``batch_size`` bounds the
        device memory.
        """
        policy = self.policy
        keep = self.use_baseline and self.n_critic_updates > 0 and policy.share_features_extractor
        store = self.device if self.batch_size is None else th.device("cpu")
        total, features, returns = 0.0, [], []
        with th.no_grad():
            for rollout_data in self._minibatches():
                pi_features = self._features(rollout_data.observations, policy.pi_features_extractor)
                distribution = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(pi_features))
                log_ratio = distribution.log_prob(self._as_policy_actions(rollout_data.actions)) - rollout_data.old_log_prob
                total += th.sum(th.exp(log_ratio) - 1 - log_ratio).item()
                if keep:
                    features.append(pi_features.to(store))
                    returns.append(rollout_data.returns.to(store))
        return total / n_used, ((th.cat(features), th.cat(returns)) if keep else None)

    def _fit_critic(self, kept: tuple[th.Tensor, th.Tensor] | None) -> None:
        """
        ``n_critic_updates`` passes of value regression on ``G`` that move the critic's own layers only. A
        features extractor shared with the actor is not run again: its features ``kept`` by the KL pass feed every
        pass, so the passes never change the policy. A critic with its own extractor trains it too.
        """
        policy = self.policy
        for _ in range(self.n_critic_updates):
            for features, returns in self._critic_minibatches(kept):
                values = policy.value_net(policy.mlp_extractor.forward_critic(features)).flatten()
                policy.optimizer.zero_grad()  # also clears the actor's gradients, so the optimizer skips it
                F.mse_loss(returns, values).backward()
                policy.optimizer.step()

    def _critic_minibatches(self, kept: tuple[th.Tensor, th.Tensor] | None) -> Any:
        """One critic pass: (features, returns) of the used samples, ``batch_size`` at a time, in the buffer's order."""
        if kept is None:  # the critic's own features extractor, run with gradient
            for rollout_data in self._minibatches():
                yield (
                    self._features(rollout_data.observations, self.policy.vf_features_extractor),
                    rollout_data.returns,
                )
            return
        features, returns = kept
        size = self.batch_size or len(returns)
        for start in range(0, len(returns), size):
            yield features[start : start + size].to(self.device), returns[start : start + size].to(self.device)

    def _features(self, obs: Any, extractor: th.nn.Module) -> th.Tensor:
        # BasePolicy's extract_features runs the given extractor; ActorCriticPolicy's returns both when not shared
        return BasePolicy.extract_features(self.policy, obs, extractor)  # type: ignore[arg-type]

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
        # A SubprocVecEnv worker whose env raised dies silently (or hangs the "fork" start method): name it
        with WorkerGuard(self.env, lambda: self.num_timesteps):
            try:
                return super().learn(
                    total_timesteps=total_timesteps,
                    callback=callback,
                    log_interval=log_interval,
                    tb_log_name=tb_log_name,
                    reset_num_timesteps=reset_num_timesteps,
                    progress_bar=progress_bar,
                )
            finally:
                # Flush the logs, even when interrupted; SB3 leaves each learn()'s TensorBoard writer (a thread) open
                if not self._custom_logger and getattr(self, "_logger", None) is not None:
                    self._logger.close()

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """
        Save the model as SB3 does (see ``BaseAlgorithm.save``), with the state of the global random generators,
        which ``load`` restores for a seeded model so that a resumed run continues their streams.
        """
        self._rng_state = get_rng_state()
        super().save(path, exclude=exclude, include=include)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfVPG],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfVPG:
        """
        Load a model saved by ``VPG.save`` (see ``BaseAlgorithm.load`` for the arguments). The file is unpickled,
        which can execute code: load only files you trust (``set_parameters`` reads the weights alone).
        A missing, truncated or corrupted file, or one saved by another algorithm, raises a clear error
        (FileNotFoundError, ValueError) before anything is unpickled. A model saved with a seed, and loaded
        without a new ``seed``, gets back the random generators' state of the save instead of being re-seeded,
        so a run resumed from a checkpoint continues as the uninterrupted run would (README, "Reliability").
        """
        check_model_file(path, cls.__name__)
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        rng_state = getattr(model, "_rng_state", None)
        if model.seed is not None and rng_state is not None and "seed" not in kwargs:
            set_rng_state(rng_state)
        return model


def _check_hyperparameters(
    learning_rate: float | Schedule,
    n_steps: int,
    batch_size: int | None,
    gamma: float,
    ent_coef: float,
    vf_coef: float,
    max_grad_norm: float | None,
    use_baseline: bool,
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
