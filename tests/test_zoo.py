"""
VPG in RL Baselines3 Zoo, end to end through the real rl_zoo3: ``python -m sb3_vpg.zoo ...`` in subprocesses,
with small budgets and fixed seeds.

This process never imports rl_zoo3 (importing it patches gymnasium's ``TimeLimit`` for every later test of the
worker): the zoo runs in subprocesses, and the models it saves are loaded without their pickled schedules.
"""

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from stable_baselines3.common.torch_layers import NatureCNN

from sb3_vpg import VPG
from tests.processes import subprocess_env

REPO = Path(__file__).resolve().parents[1]
PACKAGED_CONF = REPO / "sb3_vpg" / "hyperparams" / "vpg.yml"
# rl_zoo3 pickles the learning rate schedule of a yml entry as one of its own classes: skip it when loading
NO_SCHEDULES = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0}


def run_python_script(script: str, cwd) -> None:
    """Run ``script`` in a fresh interpreter (importing rl_zoo3 patches gymnasium process-wide); it must print ok."""
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def zoo(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m sb3_vpg.zoo ARGS``; fails the test with the output's tail if it fails."""
    result = run("sb3_vpg.zoo", *args, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def load_config(run_dir: Path, env_id: str) -> dict:
    with open(run_dir / env_id / "config.yml") as file:
        return dict(yaml.load(file, Loader=yaml.UnsafeLoader))  # rl_zoo3 writes an OrderedDict


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A CartPole-v1 run with the packaged settings (no -conf), 4000 steps, evaluated every 2000."""
    cwd = tmp_path_factory.mktemp("zoo")
    zoo(
        "train", "--algo", "vpg", "--env", "CartPole-v1", "-n", "4000", "--seed", "0", "--num-threads", "1",
        "-tb", "tb", "--eval-freq", "2000", "--eval-episodes", "2", cwd=cwd,
    )  # fmt: skip
    return cwd


def test_train_writes_model_config_and_tensorboard_run(trained):
    run_dir = trained / "logs" / "vpg" / "CartPole-v1_1"
    model = VPG.load(run_dir / "CartPole-v1.zip", custom_objects=NO_SCHEDULES, device="cpu")
    assert model.num_timesteps == 4000 and model.use_baseline
    # Without -conf, the packaged entry was used
    config = load_config(run_dir, "CartPole-v1")
    packaged = yaml.safe_load(PACKAGED_CONF.read_text())["CartPole-v1"]
    assert config == packaged
    with open(run_dir / "CartPole-v1" / "args.yml") as file:
        args = yaml.load(file, Loader=yaml.UnsafeLoader)
    assert Path(args["conf_file"]).resolve() == PACKAGED_CONF.resolve() and args["algo"] == "vpg"
    assert (run_dir / "evaluations.npz").is_file() and (run_dir / "0.monitor.csv").is_file()
    tb_run = trained / "tb" / "CartPole-v1" / "VPG_1"
    assert list(tb_run.glob("events.out.tfevents.*"))


def test_enjoy_runs_without_a_screen(trained):
    result = zoo(
        "enjoy", "--algo", "vpg", "--env", "CartPole-v1", "-f", "logs/", "--no-render", "-n", "600",
        "--deterministic", cwd=trained,
    )  # fmt: skip
    assert "Loading logs/vpg/CartPole-v1_1/CartPole-v1.zip" in result.stdout
    assert "Episode Reward" in result.stdout


def test_continue_training(trained):
    agent = trained / "logs" / "vpg" / "CartPole-v1_1" / "CartPole-v1.zip"
    result = zoo(
        "train", "--algo", "vpg", "--env", "CartPole-v1", "-i", str(agent), "-n", "4000", "--seed", "1",
        "--num-threads", "1", "-f", "continued", "-tb", "tb_continued", "--eval-freq", "-1", cwd=trained,
    )  # fmt: skip
    assert "Loading pretrained agent" in result.stdout
    model = VPG.load(trained / "continued" / "vpg" / "CartPole-v1_1" / "CartPole-v1.zip", custom_objects=NO_SCHEDULES)
    # One update in the first run, one more here: the training went on from the loaded model
    assert model._n_updates == 2
    assert list((trained / "tb_continued" / "CartPole-v1" / "VPG_1").glob("events.out.tfevents.*"))


def test_plots(trained):
    result = run("rl_zoo3.plots.plot_train", "--algo", "vpg", "--env", "CartPole-v1", "-f", "logs/", "-w", "2", cwd=trained)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run(
        "rl_zoo3.plots.all_plots", "--algos", "vpg", "--env", "CartPole-v1", "-f", "logs/", "--no-display",
        "-o", "results", cwd=trained,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(trained / "results.pkl", "rb") as file:
        results = pickle.load(file)
    (curve,) = results["CartPole-v1"].values()
    assert list(curve["timesteps"]) == [2000, 4000]


def test_atari_entry_for_any_game(tmp_path):
    # The packaged generic `atari` entry (Breakout has no entry of its own), with 2 envs and n_steps 128 to keep it short
    zoo(
        "train", "--algo", "vpg", "--env", "BreakoutNoFrameskip-v4", "-n", "256", "--seed", "0", "--num-threads", "1",
        "--eval-freq", "-1", "-params", "n_envs:2", "n_steps:128", cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "logs" / "vpg" / "BreakoutNoFrameskip-v4_1"
    config = load_config(run_dir, "BreakoutNoFrameskip-v4")
    assert config["env_wrapper"] == ["stable_baselines3.common.atari_wrappers.AtariWrapper"]
    assert config["frame_stack"] == 4 and config["n_critic_updates"] == 0
    model = VPG.load(run_dir / "BreakoutNoFrameskip-v4.zip", custom_objects=NO_SCHEDULES, device="cpu")
    # AtariWrapper's 84x84 grey frames, 4 stacked, channel first for the CNN
    assert model.observation_space.shape == (4, 84, 84)
    assert isinstance(model.policy.features_extractor, NatureCNN)
    # The entry's policy_kwargs string, evaluated by rl_zoo3: A2C's optimizer
    assert type(model.policy.optimizer).__name__ == "RMSpropTFLike" and model.policy.optimizer.defaults["eps"] == 1e-5
    assert not model.reset_on_reward and model.n_steps == 128 and model.num_timesteps == 256


@pytest.mark.parametrize("vec_env", ["dummy", "envpool"])
def test_pong_entry_is_the_sources_experiment(vec_env, tmp_path):
    # PongNoFrameskip-v4 has its own entry: difference frames, UP/DOWN, pure REINFORCE restarting at each point
    zoo(
        "train", "--algo", "vpg", "--env", "PongNoFrameskip-v4", "-n", "512", "--seed", "0", "--num-threads", "1",
        "--vec-env", vec_env, "--eval-freq", "-1", "-params", "n_envs:2", "n_steps:256", cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "logs" / "vpg" / "PongNoFrameskip-v4_1"
    model = VPG.load(run_dir / "PongNoFrameskip-v4.zip", custom_objects=NO_SCHEDULES, device="cpu")
    assert model.observation_space.shape == (6400,) and model.action_space.n == 2
    assert model.reset_on_reward and not model.use_baseline and model.normalize_returns
    assert model.policy.net_arch == [200] and model.policy.sparse_input and model.num_timesteps == 512
    # The training games are logged in Monitor's format: one file per gymnasium env, one for the EnvPool pool
    monitor_files = sorted(path.name for path in run_dir.glob("*monitor.csv"))
    assert monitor_files == (["0.monitor.csv", "1.monitor.csv"] if vec_env == "dummy" else ["monitor.csv"])


def test_atari_mc_entry_is_monte_carlo_on_the_generic_frames():
    # The generic Atari frames (84x84x4, every action, NatureCNN) with returns that restart at each reward, a learned
    # baseline and nothing bootstrapped
    pytest.importorskip("ale_py")
    from sb3_vpg.hyperparams import load_hyperparams, make_env

    run, kwargs = load_hyperparams("atari-mc")
    env = make_env("PongNoFrameskip-v4", run, n_envs=1)
    model = VPG(run["policy"], env, **kwargs)
    assert model.observation_space.shape == (4, 84, 84) and model.action_space.n == 6
    assert isinstance(model.policy.features_extractor, NatureCNN)
    assert model.use_baseline and model.reset_on_reward and model.normalize_returns
    assert model.incomplete_episodes == "drop" and model.gae_lambda == 1.0 and model.n_steps == 512
    assert model.batch_size == 128  # the CNN's update in cache-sized minibatches
    env.close()


def test_load_hyperparams_evaluates_policy_kwargs_as_the_zoo(monkeypatch):
    # Plain scripts get the same optimizer from the atari entry's policy_kwargs string as rl_zoo3 does
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    from sb3_vpg import hyperparams

    _, kwargs = hyperparams.load_hyperparams("atari")
    assert kwargs["policy_kwargs"] == {"optimizer_class": RMSpropTFLike, "optimizer_kwargs": {"eps": 1e-5}}
    # only the listed names are there: no builtins such as open or __import__
    with pytest.raises(TypeError):  # nor can anyone add them (an eval with the names as globals would)
        hyperparams.POLICY_KWARGS_NAMES["open"] = open
    monkeypatch.setattr(hyperparams.yaml, "safe_load", lambda text: {"x": {"policy_kwargs": "open('vpg.yml')"}})
    with pytest.raises(ValueError, match=r"policy_kwargs of the 'x' entry may only use .*'open'"):
        hyperparams.load_hyperparams("x")


def test_resolve_algo_kwargs_reads_zoo_strings_and_names_the_bad_one():
    from stable_baselines3.common.utils import LinearSchedule

    from sb3_vpg.hyperparams import resolve_algo_kwargs

    given = {"learning_rate": "lin_0.02", "policy_kwargs": "dict(optimizer_class=th.optim.RMSprop)", "n_steps": 8}
    kwargs = resolve_algo_kwargs(given)
    assert isinstance(kwargs["learning_rate"], LinearSchedule)
    assert [kwargs["learning_rate"](progress) for progress in (1.0, 0.25, 0.0)] == pytest.approx([0.02, 0.005, 0.0])
    assert kwargs["policy_kwargs"] == {"optimizer_class": torch.optim.RMSprop} and kwargs["n_steps"] == 8
    assert given["learning_rate"] == "lin_0.02"  # the argument is left as it was
    assert resolve_algo_kwargs({"learning_rate": 3e-4, "policy_kwargs": {}}) == {"learning_rate": 3e-4, "policy_kwargs": {}}
    with pytest.raises(ValueError, match=r"learning_rate of --params is not lin_<number>: 'lin_fast'"):
        resolve_algo_kwargs({"learning_rate": "lin_fast"}, "--params")
    with pytest.raises(ValueError, match=r"policy_kwargs of --params is not a Python expression"):
        resolve_algo_kwargs({"policy_kwargs": "dict(net_arch=[64]"}, "--params")
    allowed = r"\['RMSpropTFLike', 'SparseInputExtractor', 'dict', 'nn', 'th'\]"
    with pytest.raises(ValueError, match=r"policy_kwargs of --params may only use " + allowed):
        resolve_algo_kwargs({"policy_kwargs": "dict(f=__import__('os'))"}, "--params")
    with pytest.raises(TypeError, match=r"policy_kwargs of --params must give a dict, got \[64\]"):
        resolve_algo_kwargs({"policy_kwargs": [64]}, "--params")


@pytest.mark.parametrize(
    "env_id, module",
    [
        ("Acrobot-v1", None),
        ("LunarLander-v3", "Box2D"),
        ("Pendulum-v1", None),
        ("HalfCheetah-v5", "mujoco"),
        ("Hopper-v5", "mujoco"),
    ],
)
def test_packaged_entry_trains(env_id, module, tmp_path):
    # Each entry builds its env and trains one rollout (at least the 300 steps asked for)
    if module is not None:
        pytest.importorskip(module)
    zoo(
        "train", "--algo", "vpg", "--env", env_id, "-n", "300", "--seed", "0", "--num-threads", "1",
        "--eval-freq", "-1", cwd=tmp_path,
    )  # fmt: skip
    assert (tmp_path / "logs" / "vpg" / f"{env_id}_1" / f"{env_id}.zip").is_file()


@pytest.mark.slow
def test_optimize_with_two_workers_sharing_a_journal_study(tmp_path):
    args = [
        "train", "--algo", "vpg", "--env", "CartPole-v1", "-optimize", "--n-trials", "2", "-n", "1000",
        "--eval-episodes", "2", "--num-threads", "1", "--no-optim-plots",
        "--storage", "logs/vpg_study.log", "--study-name", "vpg_cartpole",
    ]  # fmt: skip
    # Both workers start together, so they also race to create the study
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "sb3_vpg.zoo", *args, "--seed", str(seed), "-f", f"logs_{seed}"],
            cwd=tmp_path,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "logs/vpg_study.log")))
    study = optuna.load_study(study_name="vpg_cartpole", storage=storage)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4

    # --trial-id: train with a stored trial's parameters, converted as the sampler converted them
    # (trial number 1: any number works, 0 included)
    zoo(
        "train", "--algo", "vpg", "--env", "CartPole-v1", "-n", "300", "--seed", "0", "--num-threads", "1",
        "--eval-freq", "-1", "--storage", "logs/vpg_study.log", "--study-name", "vpg_cartpole", "--trial-id", "1",
        cwd=tmp_path,
    )  # fmt: skip
    config = load_config(tmp_path / "logs" / "vpg" / "CartPole-v1_1", "CartPole-v1")
    sampled = study.trials[1].user_attrs  # the values the sampler gave this trial
    for key in ("gamma", "n_steps", "batch_size", "learning_rate"):
        assert config[key] == sampled[key], key
    params = study.trials[1].params
    for key in ("use_baseline", "normalize_returns", "n_critic_updates", "ent_coef", "max_grad_norm"):
        assert config[key] == params[key], key
    assert config["policy_kwargs"]["activation_fn"].__name__.lower().startswith(params["activation_fn"][:3])


@pytest.mark.parametrize("where", ["entry", "params"])
def test_unknown_hyperparameter_is_named(where, tmp_path):
    if where == "entry":
        entry = {"n_envs": 1, "n_timesteps": 1000, "policy": "MlpPolicy", "n_epochs": 10}
        (tmp_path / "bad.yml").write_text(yaml.safe_dump({"CartPole-v1": entry}))
        args = ["-conf", "bad.yml"]
    else:
        args = ["-params", "n_epochs:10"]
    result = run("sb3_vpg.zoo", "train", "--algo", "vpg", "--env", "CartPole-v1", "-n", "100", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown hyperparameter 'n_epochs'" in result.stderr
    assert ("'CartPole-v1' entry of bad.yml" if where == "entry" else "in -params") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()


def test_registration_extends_the_shared_dicts_in_place(tmp_path):
    script = """
import rl_zoo3, rl_zoo3.enjoy, rl_zoo3.exp_manager, rl_zoo3.hyperparams_opt, rl_zoo3.train, rl_zoo3.utils
from sb3_vpg import VPG
from sb3_vpg.zoo import register
from sb3_vpg.zoo.hyperparams_opt import convert_vpg_params, sample_vpg_params

algos, samplers = rl_zoo3.utils.ALGOS, rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER
register()
register()  # idempotent
assert rl_zoo3.utils.ALGOS is algos and rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER is samplers
for module in (rl_zoo3, rl_zoo3.enjoy, rl_zoo3.exp_manager, rl_zoo3.train):
    assert module.ALGOS["vpg"] is VPG, module
assert rl_zoo3.exp_manager.HYPERPARAMS_SAMPLER["vpg"] is sample_vpg_params
assert rl_zoo3.exp_manager.HYPERPARAMS_CONVERTER["vpg"] is convert_vpg_params
assert "ppo" in algos and "ppo" in samplers
print("ok")
"""
    run_python_script(script, tmp_path)


def test_sb3_algorithms_in_the_zoo_may_name_the_sparse_extractor(tmp_path):
    # rl_zoo3 evaluates the policy_kwargs string among its exp_manager's imports, which registering extends
    net = "net_arch=dict(pi=[],vf=[]),share_features_extractor=False,features_extractor_class=SparseInputExtractor"
    zoo(
        "train", "--algo", "ppo", "--env", "CartPole-v1", "-n", "128", "--seed", "0", "--num-threads", "1",
        "--eval-freq", "-1", "-f", "logs", "-params", "n_envs:1", "n_steps:64", "batch_size:32",
        f"policy_kwargs:'dict({net},features_extractor_kwargs=dict(features_dim=8))'", cwd=tmp_path,
    )  # fmt: skip
    with zipfile.ZipFile(tmp_path / "logs" / "ppo" / "CartPole-v1_1" / "CartPole-v1.zip") as saved:
        weights = torch.load(saved.open("policy.pth"), weights_only=True)
    shapes = {weights[f"{network}_features_extractor.linear.weight"].shape for network in ("pi", "vf")}
    assert shapes == {(8, 4)}


def test_sampler_gives_valid_vpg_arguments_and_the_converter_the_same(tmp_path):
    # Random points of the whole search space: each builds a VPG (the zoo would prune a trial whose arguments VPG
    # rejects, hiding a bad range), and the converter gives the sampler's values from the stored parameters
    script = """
import optuna
from rl_zoo3.utils import SimpleLinearSchedule
from stable_baselines3.common.env_util import make_vec_env
from sb3_vpg import VPG
from sb3_vpg.zoo.hyperparams_opt import convert_vpg_params, sample_vpg_params

optuna.logging.set_verbosity(optuna.logging.WARNING)
env = make_vec_env("CartPole-v1", n_envs=2)
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
for _ in range(40):
    trial = study.ask()
    sampled = sample_vpg_params(trial, 0, 2, {})
    model = VPG("MlpPolicy", env, **sampled)
    assert model.batch_size <= model.n_steps * env.num_envs
    converted = convert_vpg_params(trial.params)
    learning_rate = converted.pop("learning_rate")
    if isinstance(learning_rate, str):
        assert isinstance(sampled.pop("learning_rate"), SimpleLinearSchedule)
        assert learning_rate == "lin_" + str(trial.params["learning_rate"])
    else:
        assert sampled.pop("learning_rate") == learning_rate
    assert converted == sampled, (converted, sampled)
    # GAE's lambda as drawn with a baseline; lambda 1 (the return itself) without one
    assert model.gae_lambda == (trial.params["gae_lambda"] if model.use_baseline else 1.0)
    study.tell(trial, 0.0)
# a trial stored before the sampler drew gae_lambda converts to lambda 1
old_params = {key: value for key, value in trial.params.items() if key != "gae_lambda"}
assert convert_vpg_params({**old_params, "use_baseline": True})["gae_lambda"] == 1.0
print("ok")
"""
    run_python_script(script, tmp_path)
