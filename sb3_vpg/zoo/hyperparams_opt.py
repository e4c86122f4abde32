"""
Optuna sampler for VPG in rl_zoo3's style (``-optimize``), and the converter that turns a stored trial's
parameters back into hyperparameters (``--trial-id``).

The sampler returns the converter's output, so both give the same settings; the one difference is the
learning rate schedule: the converter writes it in the yml form (``"lin_<value>"``), which rl_zoo3 turns into a
schedule when it reads a trial's parameters, while the sampler's values go straight to ``VPG``, so it gives the
schedule object itself.
"""

from typing import Any

import optuna
from rl_zoo3.utils import SimpleLinearSchedule
from torch import nn

NET_ARCH = {
    "tiny": {"pi": [64], "vf": [64]},
    "small": {"pi": [64, 64], "vf": [64, 64]},
    "medium": {"pi": [256, 256], "vf": [256, 256]},
}
ACTIVATION_FN = {"tanh": nn.Tanh, "relu": nn.ReLU}


def convert_vpg_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    VPG hyperparameters from the parameters of an Optuna trial of :func:`sample_vpg_params`.

    :param sampled_params: ``trial.params``
    :return: constructor arguments, with ``learning_rate`` as a float or as ``"lin_<value>"`` (rl_zoo3's linear decay)
    """
    hyperparams = dict(sampled_params)
    n_steps = 2 ** hyperparams.pop("n_steps_pow")
    # A fraction of one env's rollout, so batch_size <= n_steps * n_envs whatever n_envs is
    batch_size = n_steps // 2 ** hyperparams.pop("batch_fraction_pow")
    gamma = 1 - hyperparams.pop("one_minus_gamma")
    learning_rate = hyperparams.pop("learning_rate")
    # GAE weights need a critic: without a baseline the policy is weighted by G itself (lambda 1). Trials stored
    # before the sampler drew gae_lambda have none, which is lambda 1
    sampled_lambda = hyperparams.pop("gae_lambda", 1.0)
    gae_lambda = sampled_lambda if hyperparams["use_baseline"] else 1.0
    if hyperparams.pop("lr_schedule") == "linear":
        learning_rate = f"lin_{learning_rate}"
    policy_kwargs = {
        "net_arch": NET_ARCH[hyperparams.pop("net_arch")],
        "activation_fn": ACTIVATION_FN[hyperparams.pop("activation_fn")],
    }
    return {
        "n_steps": n_steps,
        "batch_size": batch_size,
        "gamma": gamma,
        "gae_lambda": gae_lambda,
        "learning_rate": learning_rate,
        "policy_kwargs": policy_kwargs,
        **hyperparams,  # use_baseline, normalize_returns, n_critic_updates, ent_coef, max_grad_norm
    }


def sample_vpg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for VPG hyperparameters (the signature of rl_zoo3's samplers).

    :param trial: the Optuna trial
    :param n_actions: size of a ``Box`` action space (unused)
    :param n_envs: number of parallel envs (unused: ``batch_size`` is sampled as a fraction of ``n_steps``)
    :param additional_args: rl_zoo3's extra arguments (unused)
    :return: VPG constructor arguments
    """
    # From 2**8 = 256 to 2**12 = 4096 steps per env and rollout (an episode must end inside it to have a return)
    n_steps_pow = trial.suggest_int("n_steps_pow", 8, 12)
    # batch_size = n_steps / 1, 2, 4 or 8: the critic passes' minibatches (the policy step is the same for any size)
    batch_fraction_pow = trial.suggest_int("batch_fraction_pow", 0, 3)
    one_minus_gamma = trial.suggest_float("one_minus_gamma", 0.0001, 0.05, log=True)
    learning_rate = trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True)
    lr_schedule = trial.suggest_categorical("lr_schedule", ["constant", "linear"])
    use_baseline = trial.suggest_categorical("use_baseline", [False, True])
    normalize_returns = trial.suggest_categorical("normalize_returns", [True, False])
    # Ignored without a baseline: the critic's passes, and GAE's lambda (1: G - V; 0.97: Spinning Up's VPG)
    n_critic_updates = trial.suggest_int("n_critic_updates", 0, 20)
    gae_lambda = trial.suggest_categorical("gae_lambda", [0.9, 0.95, 0.97, 0.99, 1.0])
    ent_coef = trial.suggest_float("ent_coef", 0.00000001, 0.1, log=True)
    max_grad_norm = trial.suggest_float("max_grad_norm", 0.3, 5.0, log=True)
    net_arch = trial.suggest_categorical("net_arch", ["tiny", "small", "medium"])
    activation_fn = trial.suggest_categorical("activation_fn", ["tanh", "relu"])

    hyperparams = convert_vpg_params(
        {
            "n_steps_pow": n_steps_pow,
            "batch_fraction_pow": batch_fraction_pow,
            "one_minus_gamma": one_minus_gamma,
            "learning_rate": learning_rate,
            "lr_schedule": lr_schedule,
            "use_baseline": use_baseline,
            "normalize_returns": normalize_returns,
            "n_critic_updates": n_critic_updates,
            "gae_lambda": gae_lambda,
            "ent_coef": ent_coef,
            "max_grad_norm": max_grad_norm,
            "net_arch": net_arch,
            "activation_fn": activation_fn,
        }
    )
    # Display true values
    for key in ("gamma", "n_steps", "batch_size", "learning_rate"):
        trial.set_user_attr(key, hyperparams[key])
    if isinstance(hyperparams["learning_rate"], str):
        hyperparams["learning_rate"] = SimpleLinearSchedule(learning_rate)
    return hyperparams
