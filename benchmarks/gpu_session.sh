#!/usr/bin/env bash
# What a 15-minute GPU session measures, as one command. Both parts take about 16 minutes, more than a session has
# once the machine has started: run one, SKIP_CURVES=1 (about 10 minutes) or SKIP_THROUGHPUT=1 (about 6).
#   1. Pong CnnPolicy throughput, 16 SubprocVecEnv: random actions, SB3's collection alone, A2C and VPG, VPG as
#      the last H200 run measured it (vpg_before: SB3's sampler, new observation arrays every rollout, SB3's
#      add() after the env step), and VPG with cuda_graph=True (vpg_graph), interleaved,
#      3 rounds, and a profile of one more round each (where the time of an env step goes); then the GPU memory of
#      one VPG update on a 16 x 1024 rollout per batch_size, and the time to hand such a rollout to the device as
#      one batch (SB3's gather against VPG's get()). PPO (0.87-0.92x A2C in two earlier sessions) is left out;
#      THROUGHPUT_ALGOS sets the list (vpg_multinomial, vpg_fresh_buffer, vpg_serial undo one change each);
#   2. Pong learning curves, A2C (rl_zoo3's Atari settings) beside VPG (the packaged `atari` entry), 270 s each,
#      both at once. Each run saves its model (about 20 MB) beside its CSV, so a later session continues it:
#      copy the returned pong/*.csv and *.zip into a git-ignored folder here, carry it, and set CURVES_FROM to it.
# Run from the repo root on the GPU machine (after installing the wheels of ../shared/tools/gpu-wheels.sh);
# results go to $OUT (default benchmarks/results/gpu). SKIP_THROUGHPUT=1 gives the whole session to the curves.
set -u
OUT=${OUT:-benchmarks/results/gpu}
SECONDS_LEARN=${SECONDS_LEARN:-270}
DEVICE=${DEVICE:-cuda}
CURVES_FROM=${CURVES_FROM:-}
SKIP_THROUGHPUT=${SKIP_THROUGHPUT:-}
SKIP_CURVES=${SKIP_CURVES:-}
THROUGHPUT_ALGOS=${THROUGHPUT_ALGOS:-random,collect,a2c,vpg,vpg_before,vpg_graph}
THROUGHPUT_EXTRA=${THROUGHPUT_EXTRA:-}  # a dry run on CPU: DEVICE=cpu SECONDS_LEARN=10 THROUGHPUT_EXTRA="--n-envs 2 --steps 256 --rounds 1"
mkdir -p "$OUT/pong"
export PYTHONUNBUFFERED=1
quiet() { grep -v -E "^A\.L\.E|Powered by Stella|^$" || true; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "$(nproc) CPUs, $(python3 -c 'import torch, stable_baselines3 as sb3; print("torch", torch.__version__, "SB3", sb3.__version__)')"
  [ -n "$SKIP_THROUGHPUT" ] && exit 0
  timeout 540 python3 benchmarks/throughput.py --case pong --device "$DEVICE" --rounds 3 \
    --algos "$THROUGHPUT_ALGOS" --profile --update-memory $THROUGHPUT_EXTRA
  timeout 60 python3 benchmarks/throughput.py --batch-copy --device "$DEVICE"
} 2>&1 | quiet | tee "$OUT/throughput.log"
[ -n "$SKIP_CURVES" ] && exit 0
if [ -n "$CURVES_FROM" ]; then cp "$CURVES_FROM"/*.csv "$CURVES_FROM"/*.zip "$OUT/pong/"; fi
{
  for algo in a2c vpg; do
    timeout $((SECONDS_LEARN + 90)) python3 benchmarks/atari_curve.py --algo $algo --seconds "$SECONDS_LEARN" \
      --device "$DEVICE" --out "$OUT/pong" --resume &
  done
  wait
} 2>&1 | quiet | tee "$OUT/learn.log"
python3 benchmarks/atari_curve.py --plot --out "$OUT/pong" 2>&1 | tee "$OUT/pong.md"
