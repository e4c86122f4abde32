"""
The ablation ladder of benchmarks/benchmark.py (``--algo ladder``, docs/guide/ladder.rst): its rungs come in order,
and each VPG rung, the env's packaged entry plus the rung's ``-params``, builds the VPG its textbook name says; so do
the benchmark's other variants of an entry (``vpg_pure``, ``vpg_baseline``), on every packaged entry.

The rung settings below are the specification, written out here rather than read from the benchmark. This process
never imports rl_zoo3 (it patches gymnasium's ``TimeLimit`` process-wide): the ``-params`` are evaluated as rl_zoo3's
``StoreDict`` does, and the slow test goes through the zoo itself in a subprocess.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch as th
import yaml
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.utils import LinearSchedule

from sb3_vpg import VPG
from sb3_vpg.common.sparse_input import SparseInputLinear
from sb3_vpg.hyperparams import RUN_KEYS, load_hyperparams, make_env, resolve_algo_kwargs

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import benchmark  # noqa: E402 (benchmarks/ is a folder of scripts, not a package: importable once on sys.path)

LADDER = ["reinforce", "reinforce_norm", "reinforce_baseline", "vpg_gae", "actor_critic", "a2c", "ppo"]
MONTE_CARLO = {"incomplete_episodes": "drop", "gae_lambda": 1.0}
#: rung -> the VPG settings that make it the algorithm it is named after
RUNGS = {
    "reinforce": {"use_baseline": False, "normalize_returns": False, **MONTE_CARLO},
    "reinforce_norm": {"use_baseline": False, "normalize_returns": True, **MONTE_CARLO},
    "reinforce_baseline": {"use_baseline": True, "normalize_returns": True, **MONTE_CARLO},
    "vpg_gae": {"use_baseline": True, "normalize_returns": True, "incomplete_episodes": "bootstrap", "gae_lambda": 0.97},
    "actor_critic": {
        "use_baseline": True,
        "normalize_returns": False,
        "incomplete_episodes": "bootstrap",
        "gae_lambda": 1.0,
        "n_critic_updates": 0,
        "n_steps": 5,
        "n_envs": 8,
        "batch_size": None,
    },
}
#: A2C's optimizer (SB3's A2C with use_rms_prop=True) and constant step size for the actor-critic rung
A2C_OPTIMIZER = (th.optim.RMSprop, {"alpha": 0.99, "eps": 1e-5, "weight_decay": 0})
A2C_LEARNING_RATE = 7e-4


def rung_settings(env_id: str, rung: str) -> tuple[dict, dict]:
    """The packaged entry of ``env_id`` with the rung's ``-params`` applied, evaluated as rl_zoo3's StoreDict does."""
    zoo_algo, params = benchmark.zoo_params(env_id, rung)
    assert zoo_algo == "vpg"
    run, kwargs = load_hyperparams(env_id)
    for param in params:
        key, _, value = param.partition(":")
        # the benchmark's own text, evaluated as rl_zoo3 evaluates it
        (run if key in RUN_KEYS else kwargs)[key] = eval(value, {"th": th})
    return run, kwargs


def test_ladder_alias_expands_to_the_rungs_in_order():
    assert benchmark.expand_algos("ladder") == LADDER
    assert benchmark.expand_algos("vpg,ladder") == ["vpg", *LADDER]
    assert benchmark.expand_algos("a2c,ppo") == ["a2c", "ppo"]
    assert set(LADDER) <= set(benchmark.ALGOS)
    # report() draws the table and the curves in this order, whatever order the runs are found in
    scrambled = ["ppo", "vpg_gae", "reinforce", "a2c", "reinforce_baseline", "actor_critic", "reinforce_norm"]
    assert sorted(scrambled, key=benchmark._algo_order) == LADDER
    assert [benchmark.ALGOS[name][0] for name in LADDER] == ["vpg"] * 5 + ["a2c", "ppo"]


def test_ladder_alias_on_the_command_line(tmp_path):
    # every rung already finished: the alias names finished runs only, so none is left to do (an unexpanded
    # "ladder" would be one unknown algo)
    for rung in LADDER:
        folder = tmp_path / "runs" / "CartPole-v1" / rung / "seed0"
        folder.mkdir(parents=True)
        (folder / "done.json").write_text("{}")
    command = [sys.executable, str(BENCHMARKS / "benchmark.py"), "run", "--env", "CartPole-v1", "--algo", "ladder"]
    result = subprocess.run(
        [*command, "--seeds", "0", "--steps", "100", "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "0 runs to do" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("env_id", ["CartPole-v1", "LunarLander-v3", "HalfCheetah-v5", "Hopper-v5"])
@pytest.mark.parametrize("rung", ["reinforce", "reinforce_norm", "reinforce_baseline"])
def test_monte_carlo_rungs_hold_whole_episodes(env_id, rung):
    # "drop" leaves out samples whose episode the rollout does not see end: a rollout shorter than the env's time
    # limit could leave out every sample of a run whose episodes all last to the limit
    _, kwargs = rung_settings(env_id, rung)
    assert kwargs["n_steps"] >= gym.spec(env_id).max_episode_steps, (env_id, rung, kwargs["n_steps"])


#: The packaged entries of gymnasium's own envs, and the module each needs
ENTRY_ENVS = {
    "CartPole-v1": "gymnasium",
    "Acrobot-v1": "gymnasium",
    "LunarLander-v3": "Box2D",
    "Pendulum-v1": "gymnasium",
    "HalfCheetah-v5": "mujoco",
    "Hopper-v5": "mujoco",
}


@pytest.mark.parametrize("env_id", list(ENTRY_ENVS))
@pytest.mark.parametrize("variant", ["vpg", "vpg_pure", "vpg_baseline", *RUNGS])
def test_every_entry_takes_every_vpg_variant(env_id, variant):
    # an entry's own settings must not contradict a variant's (pure REINFORCE with an entry's GAE lambda is a
    # ValueError): each variant of each entry builds, with a baseline exactly when its name says so
    pytest.importorskip(ENTRY_ENVS[env_id])
    run, kwargs = rung_settings(env_id, variant)
    env = make_env(env_id, run)
    model = VPG(run["policy"], env, **kwargs)
    expected_baseline = {"vpg_pure": False, "vpg_baseline": True, **{rung: RUNGS[rung]["use_baseline"] for rung in RUNGS}}
    assert model.use_baseline == expected_baseline.get(variant, kwargs.get("use_baseline", False))
    if not model.use_baseline:
        assert model.gae_lambda == 1.0
    env.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "LunarLander-v3", "HalfCheetah-v5"])
@pytest.mark.parametrize("rung", list(RUNGS))
def test_each_vpg_rung_builds_the_intended_vpg(env_id, rung):
    pytest.importorskip(ENTRY_ENVS[env_id])
    run, kwargs = rung_settings(env_id, rung)
    env = make_env(env_id, run)
    model = VPG(run["policy"], env, **kwargs)
    expected = RUNGS[rung]
    for name, value in expected.items():
        actual = model.n_envs if name == "n_envs" else getattr(model, name)
        assert actual == value, (name, actual, value)
    # the packaged (n_envs, n_steps)
    entry_rollout = {"CartPole-v1": (1, 4000), "LunarLander-v3": (4, 1000), "HalfCheetah-v5": (8, 64)}[env_id]
    if "n_steps" not in expected:  # Monte-Carlo rungs roll out whole 1000-step MuJoCo episodes, 4 envs at a time
        whole_episodes = env_id == "HalfCheetah-v5" and expected["incomplete_episodes"] == "drop"
        assert (model.n_envs, model.n_steps) == ((4, 1000) if whole_episodes else entry_rollout)
    optimizer = model.policy.optimizer
    if rung == "actor_critic":  # A2C's step: RMSprop at a constant 7e-4 on 8 x 5 samples
        optimizer_class, optimizer_kwargs = A2C_OPTIMIZER
        assert type(optimizer) is optimizer_class
        assert {key: optimizer.defaults[key] for key in optimizer_kwargs} == optimizer_kwargs
        assert model.lr_schedule(1.0) == model.lr_schedule(0.0) == A2C_LEARNING_RATE
    else:  # the entry's own optimizer (Adam) and learning rate
        assert type(optimizer) is th.optim.Adam
        _, entry = load_hyperparams(env_id)
        learning_rate = entry["learning_rate"]
        if isinstance(learning_rate, LinearSchedule):
            learning_rate = learning_rate(1.0)
        assert model.lr_schedule(1.0) == pytest.approx(learning_rate)
    env.close()


def test_pong_rungs_keep_the_sources_network_and_points():
    # On the source's Pong frames every VPG rung keeps the entry's 200-unit layers (sparse) and its returns that
    # restart at each point; the actor-critic rung only swaps in A2C's optimizer and step settings
    pytest.importorskip("ale_py")
    for rung, expected in RUNGS.items():
        run, kwargs = rung_settings("PongNoFrameskip-v4", rung)
        env = make_env("PongNoFrameskip-v4", run, n_envs=1)
        model = VPG(run["policy"], env, **kwargs)
        assert model.reset_on_reward and model.policy.sparse_input, rung
        assert model.policy.net_arch in ([200], {"pi": [200], "vf": [200]}), (rung, model.policy.net_arch)
        assert all(getattr(model, name) == value for name, value in expected.items() if name != "n_envs"), rung
        optimizer_class, optimizer_kwargs = A2C_OPTIMIZER if rung == "actor_critic" else (th.optim.Adam, {})
        assert type(model.policy.optimizer) is optimizer_class, rung
        assert {key: model.policy.optimizer.defaults[key] for key in optimizer_kwargs} == optimizer_kwargs
        env.close()


@pytest.mark.slow
def test_ladder_runs_through_the_zoo(tmp_path):
    # The ladder through rl_zoo3 itself, tiny budgets: each VPG rung's saved model has the rung's settings
    command = [str(BENCHMARKS / "benchmark.py"), "run", "--env", "CartPole-v1", "--algo", "ladder", "--seeds", "0"]
    command += ["--steps", "200", "--eval-freq", "100", "--eval-episodes", "1", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, *command], check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "7 runs to do" in result.stdout, result.stderr[-3000:]
    for rung, expected in RUNGS.items():
        (path,) = (tmp_path / "runs" / "CartPole-v1" / rung / "seed0" / "vpg").glob("CartPole-v1_*/CartPole-v1.zip")
        model = VPG.load(path, custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0}, device="cpu")
        for name, value in expected.items():
            actual = model.n_envs if name == "n_envs" else getattr(model, name)
            assert actual == value, (rung, name, actual, value)
    for zoo_algo in ("a2c", "ppo"):
        assert list((tmp_path / "runs" / "CartPole-v1" / zoo_algo / "seed0" / zoo_algo).glob("CartPole-v1_*/*.zip"))


def zoo_atari_settings(zoo_algo: str) -> dict:
    """rl_zoo3's published ``atari`` entry of ``zoo_algo``, read from its file (this process never imports rl_zoo3)."""
    (folder,) = importlib.util.find_spec("rl_zoo3").submodule_search_locations
    return yaml.safe_load((Path(folder) / "hyperparams" / f"{zoo_algo}.yml").read_text())["atari"]


@pytest.mark.parametrize("zoo_algo", ["a2c", "ppo"])
def test_pong_a2c_and_ppo_rungs_see_what_the_vpg_rungs_see(zoo_algo):
    # SB3's A2C and PPO on Pong differ from the VPG rungs in the algorithm alone: the entry's env (difference frames,
    # UP/DOWN, no frame stack) and its 200-unit actor and critic; rl_zoo3's Atari step settings stay
    pytest.importorskip("ale_py")
    published = zoo_atari_settings(zoo_algo)
    zoo_algo_, params = benchmark.zoo_params("PongNoFrameskip-v4", zoo_algo)
    assert zoo_algo_ == zoo_algo
    settings = dict(published)
    for param in params:  # evaluated as rl_zoo3's StoreDict does, then its policy_kwargs string as the zoo does
        key, _, value = param.partition(":")
        settings[key] = eval(value, {"th": th})
    settings["policy_kwargs"] = resolve_algo_kwargs({"policy_kwargs": settings["policy_kwargs"]})["policy_kwargs"]
    entry_run, _ = load_hyperparams("PongNoFrameskip-v4")
    assert settings["env_wrapper"] == entry_run["env_wrapper"]
    assert settings["frame_stack"] is None and settings["policy"] == "MlpPolicy"
    kept = {key for key in published if key not in ("env_wrapper", "frame_stack", "policy", "policy_kwargs")}
    assert {key: settings[key] for key in kept} == {key: published[key] for key in kept}  # n_envs, n_steps, rates...
    if zoo_algo == "a2c":  # the published optimizer survives the new network
        assert settings["policy_kwargs"]["optimizer_class"] is RMSpropTFLike
        assert (
            settings["policy_kwargs"]["optimizer_kwargs"]
            == eval(published["policy_kwargs"], {"RMSpropTFLike": RMSpropTFLike})["optimizer_kwargs"]
        )
    vpg_run, vpg_kwargs = rung_settings("PongNoFrameskip-v4", "actor_critic")
    vpg_env = make_env("PongNoFrameskip-v4", vpg_run, n_envs=1)
    env = make_env("PongNoFrameskip-v4", {**entry_run, "frame_stack": settings["frame_stack"]}, n_envs=1)
    algo_class = {"a2c": A2C, "ppo": PPO}[zoo_algo]
    model = algo_class(settings["policy"], env, policy_kwargs=settings["policy_kwargs"])
    vpg = VPG(vpg_run["policy"], vpg_env, **vpg_kwargs)
    assert model.observation_space == vpg.observation_space and model.action_space == vpg.action_space
    # An actor and a critic of 200 hidden units each; PPO's first layers skip the frames' zeros (its main cost)
    first = [layer for layer in model.policy.modules() if isinstance(layer, th.nn.Linear) and layer.in_features == 6400]
    assert [layer.out_features for layer in first] == [200, 200]
    assert all(isinstance(layer, SparseInputLinear) == (zoo_algo == "ppo") for layer in first)
    assert model.policy.action_net.in_features == model.policy.value_net.in_features == 200
    env.close()
    vpg_env.close()


@pytest.mark.slow
def test_pong_a2c_and_ppo_rungs_through_the_zoo_on_envpool(tmp_path):
    # rl_zoo3 takes the rungs' env_wrapper, frame_stack and policy from -params, and EnvPool runs that env
    pytest.importorskip("envpool")
    command = [str(BENCHMARKS / "benchmark.py"), "run", "--env", "PongNoFrameskip-v4", "--algo", "a2c,ppo"]
    command += ["--seeds", "0", "--steps", "200", "--eval-freq", "100000", "--vec-env", "envpool", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, *command], check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for zoo_algo, algo_class in (("a2c", A2C), ("ppo", PPO)):
        (path,) = (tmp_path / "runs" / "PongNoFrameskip-v4" / zoo_algo / "seed0" / zoo_algo).glob("*/PongNoFrameskip-v4.zip")
        model = algo_class.load(path, device="cpu")
        assert model.observation_space.shape == (6400,) and model.action_space.n == 2, zoo_algo
