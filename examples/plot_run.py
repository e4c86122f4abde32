"""
Plot a finished run's learning curve from its TensorBoard logs (no TensorBoard server needed).

    python examples/cartpole.py                       # writes runs/VPG_1
    python examples/plot_run.py runs/VPG_1            # writes runs/VPG_1.png

Any scalar that SB3 logs can be drawn (``--tag``), e.g. ``train/approx_kl`` or ``train/return_mean``.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder, e.g. runs/VPG_1")
    parser.add_argument("--tag", default="rollout/ep_rew_mean", help="the scalar to plot")
    parser.add_argument("--out", default=None, help="PNG path (default: the run folder's name + .png)")
    args = parser.parse_args()

    events = EventAccumulator(args.run)
    events.Reload()
    tags = events.Tags()["scalars"]
    if args.tag not in tags:
        raise SystemExit(f"{args.run} has no scalar {args.tag!r}; it has: {', '.join(sorted(tags))}")
    scalars = events.Scalars(args.tag)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot([s.step for s in scalars], [s.value for s in scalars])
    ax.set_xlabel("environment steps")
    ax.set_ylabel(args.tag)
    ax.set_title(args.run)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = args.out or args.run.rstrip("/") + ".png"
    fig.savefig(out, dpi=110)
    print(f"{len(scalars)} points of {args.tag}, last {scalars[-1].value:.1f} at step {scalars[-1].step}: {out}")


if __name__ == "__main__":
    main()
