"""
``gae_lambda``: VPG's GAE advantages against an independent computation of Spinning Up's VPG buffer maths
(``VPGBuffer.finish_path`` in spinup/algos/pytorch/vpg/vpg.py), on scripted envs with terminations, time-limit
truncations and rollout cut-offs.
"""

import numpy as np
import pytest
import scipy.signal
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_vpg import VPG
from sb3_vpg.common.buffers import generalized_advantage

GAMMA = 0.9
N_STEPS = 7
N_ROLLOUTS = 2
# One script per env, so that the rollout cuts fall at different points of their episodes. Env 2's first episode
# outlasts the first rollout (no end in it at all), and ends on the first step of the second.
SCRIPTS = [
    [([1.0, 2.0, 3.0], "terminated"), ([0.5, 0.0, -1.0, 2.0], "truncated")],
    [([2.0, -1.0, 0.0, 1.0, 3.0], "truncated"), ([1.0, 1.0], "terminated")],
    [([0.0, 0.25, 0.0, 0.0, -0.5, 0.0, 0.0, 1.0], "terminated")],
]
MAX_OBS = max(len(rewards) for script in SCRIPTS for rewards, _ in script)


def discount_cumsum(x: np.ndarray, discount: float) -> np.ndarray:
    """Spinning Up's ``core.discount_cumsum``: ``[x0 + d x1 + d^2 x2, x1 + d x2, x2]``."""
    return scipy.signal.lfilter([1], [1, float(-discount)], x[::-1], axis=0)[::-1]


def finish_path(rewards: list, values: list, last_val: float, gamma: float, lam: float) -> tuple:
    """Spinning Up's ``VPGBuffer.finish_path``: the last value appended, GAE-lambda advantages, rewards-to-go."""
    rews = np.append(np.array(rewards, dtype=np.float64), last_val)
    vals = np.append(np.array(values, dtype=np.float64), last_val)
    deltas = rews[:-1] + gamma * vals[1:] - vals[:-1]
    return discount_cumsum(deltas, gamma * lam), discount_cumsum(rews, gamma)[:-1]


def play(script: list, n_steps: int) -> list:
    """The steps an env plays, independently of the env class: ``(obs, reward, end, next_obs)`` per step, ``end``
    in ``{None, "terminated", "truncated"}``; ``next_obs`` is the terminal observation (the episode's length)."""
    steps, episode = [], 0
    while len(steps) < n_steps:
        rewards, how_it_ends = script[episode % len(script)]
        for t, reward in enumerate(rewards):
            end = how_it_ends if t == len(rewards) - 1 else None
            steps.append((t, reward, end, t + 1))
        episode += 1
    return steps[:n_steps]


def spinning_up_rollout(steps: list, value: np.ndarray, gamma: float, lam: float, incomplete_episodes: str) -> tuple:
    """
    Spinning Up's buffer over one env's steps of one rollout: paths split at terminations (last value 0),
    time-limit truncations (``V`` of the terminal observation) and the rollout's cut (``V`` of the next observation
    with ``"bootstrap"``, 0 with ``"truncate"``; no return with ``"drop"``). ``value[obs]`` is the critic's ``V``.
    """
    advantages, returns, has_return = [], [], []
    start = 0
    for i, (_, _, end, next_obs) in enumerate(steps):
        is_cut = i == len(steps) - 1 and end is None
        if end is None and not is_cut:
            continue
        path = steps[start : i + 1]
        if end == "terminated":
            last_val = 0.0
        elif end == "truncated":
            last_val = value[next_obs]  # the terminal observation
        else:  # the cut: after a step that ended no episode, the next observation is next_obs
            last_val = value[next_obs] if incomplete_episodes == "bootstrap" else 0.0
        adv, ret = finish_path([s[1] for s in path], [value[s[0]] for s in path], last_val, gamma, lam)
        advantages += list(adv)
        returns += list(ret)
        has_return += [not (is_cut and incomplete_episodes == "drop")] * len(path)
        start = i + 1
    return np.array(advantages), np.array(returns), np.array(has_return)


def critic_table(model) -> dict:
    """V of every observation the scripted envs can show (the step index inside the episode)."""
    with th.no_grad():
        obs = th.arange(MAX_OBS + 1, dtype=th.float32).reshape(-1, 1)
        return {"value": model.policy.predict_values(obs).flatten().double().numpy()}


def run(scripted_env_cls, rollout_capture, n_rollouts=N_ROLLOUTS, **kwargs):
    env = DummyVecEnv([lambda script=script: scripted_env_cls(script) for script in SCRIPTS])
    model = VPG("MlpPolicy", env, n_steps=N_STEPS, gamma=GAMMA, use_baseline=True, learning_rate=1e-2, seed=0, **kwargs)
    arrays = ("returns", "advantages", "has_return", "values", "rewards", "episode_ends", "observations")
    capture = rollout_capture(arrays, also=critic_table)
    model.learn(n_rollouts * N_STEPS * len(SCRIPTS), callback=capture)
    assert len(capture.rollouts) == n_rollouts
    return model, capture.rollouts


@pytest.mark.parametrize("incomplete_episodes", ["bootstrap", "truncate", "drop"])
@pytest.mark.parametrize("gae_lambda", [0.97, 0.5, 0.0, 1.0])
def test_matches_spinning_up_buffer(scripted_env_cls, rollout_capture, gae_lambda, incomplete_episodes):
    _, rollouts = run(scripted_env_cls, rollout_capture, gae_lambda=gae_lambda, incomplete_episodes=incomplete_episodes)
    for env_index, script in enumerate(SCRIPTS):
        stream = play(script, N_ROLLOUTS * N_STEPS)
        for k, rollout in enumerate(rollouts):  # the critic moves between rollouts: each has its own V
            steps = stream[k * N_STEPS : (k + 1) * N_STEPS]
            value = rollout["value"]
            # The env and the buffer saw the steps this test plays, with the V of the table
            np.testing.assert_array_equal(rollout["observations"][:, env_index, 0], [s[0] for s in steps])
            np.testing.assert_allclose(rollout["values"][:, env_index], value[[s[0] for s in steps]], rtol=1e-5, atol=1e-6)
            advantages, returns, has_return = spinning_up_rollout(steps, value, GAMMA, gae_lambda, incomplete_episodes)
            np.testing.assert_array_equal(rollout["has_return"][:, env_index], has_return)
            used = has_return
            np.testing.assert_allclose(rollout["returns"][used, env_index], returns[used], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(rollout["advantages"][used, env_index], advantages[used], rtol=1e-5, atol=1e-5)
    # The script has what the comparison is about: terminations, truncations, and cuts inside episodes
    ends = {s[2] for script in SCRIPTS for s in play(script, N_ROLLOUTS * N_STEPS)}
    assert ends == {None, "terminated", "truncated"}
    assert not rollouts[0]["episode_ends"][:, 2].any()  # env 2: a whole rollout without an end


def last_values(rollout: dict) -> np.ndarray:
    """V of each env's observation after the first rollout (the reset observation 0 where the last step ended)."""
    last_obs = np.array([play(script, N_STEPS)[-1][3] for script in SCRIPTS])
    last_obs[rollout["episode_ends"][-1]] = 0
    return rollout["value"][last_obs]


def test_lambda_one_is_g_minus_v(scripted_env_cls, rollout_capture):
    _, (rollout,) = run(scripted_env_cls, rollout_capture, n_rollouts=1)  # the default, gae_lambda=1.0
    # Today's weights, bit for bit
    np.testing.assert_array_equal(rollout["advantages"], rollout["returns"] - rollout["values"])
    # and what the GAE recursion telescopes to
    gae = generalized_advantage(
        rollout["rewards"], rollout["values"], rollout["episode_ends"], GAMMA, 1.0, last_values(rollout)
    )
    np.testing.assert_allclose(gae, rollout["returns"] - rollout["values"], rtol=1e-5, atol=1e-5)


def test_lambda_zero_gives_one_step_td_errors(scripted_env_cls, rollout_capture):
    model, (rollout,) = run(scripted_env_cls, rollout_capture, n_rollouts=1, gae_lambda=0.0)
    rewards, values, ends = rollout["rewards"], rollout["values"].astype(np.float64), rollout["episode_ends"]
    # V(s_{t+1}): the next step's value, then V of the observation after the rollout
    next_values = np.concatenate([values[1:], last_values(rollout)[None]])
    td_errors = rewards + GAMMA * (1 - ends) * next_values - values
    np.testing.assert_allclose(rollout["advantages"], td_errors, rtol=1e-5, atol=1e-5)
    assert model.gae_lambda == 0.0 and model.rollout_buffer.gae_lambda == 0.0


def test_critic_target_does_not_depend_on_lambda(scripted_env_cls, rollout_capture):
    (_, (gae,)), (_, (mc,)) = (run(scripted_env_cls, rollout_capture, n_rollouts=1, gae_lambda=lam) for lam in (0.97, 1.0))
    np.testing.assert_array_equal(gae["returns"], mc["returns"])
    assert not np.allclose(gae["advantages"], mc["advantages"])


def test_save_load_keeps_gae_lambda(tmp_path):
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=16, use_baseline=True, gae_lambda=0.97, seed=0)
    model.save(tmp_path / "model.zip")
    loaded = VPG.load(tmp_path / "model.zip", env=model.get_env())
    assert loaded.gae_lambda == 0.97 and loaded.rollout_buffer.gae_lambda == 0.97


@pytest.mark.parametrize(
    "gae_lambda, error",
    [
        ("0.97", TypeError),
        (None, TypeError),
        (True, TypeError),
        (-0.1, ValueError),
        (1.01, ValueError),
        (float("nan"), ValueError),
    ],
)
def test_bad_gae_lambda_is_refused(gae_lambda, error):
    with pytest.raises(error, match="gae_lambda"):
        VPG("MlpPolicy", "CartPole-v1", use_baseline=True, gae_lambda=gae_lambda)


def test_gae_lambda_needs_a_baseline():
    with pytest.raises(ValueError, match=r"gae_lambda.*use_baseline"):
        VPG("MlpPolicy", "CartPole-v1", gae_lambda=0.97)
    VPG("MlpPolicy", "CartPole-v1", gae_lambda=1.0)  # pure REINFORCE keeps the default
    VPG("MlpPolicy", "CartPole-v1", gae_lambda=1)
