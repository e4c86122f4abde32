#!/usr/bin/env bash
# Everything one 15-minute GPU session measures, as one command (about 8 minutes of it):
#   1. Pong CnnPolicy throughput, 16 SubprocVecEnv: random actions, SB3's collection alone, A2C, PPO and VPG,
#      interleaved, 3 rounds, then the GPU memory of one VPG update on a 16 x 1024 rollout per batch_size, and
#      the time to hand such a rollout to the device as one batch (SB3's gather against VPG's get());
#   2. Pong learning curves, A2C (rl_zoo3's Atari settings) beside two VPG settings, 270 s each, all at once.
# Run from the repo root on the GPU machine (after installing the wheels of ../shared/tools/gpu-wheels.sh);
# results go to $OUT (default benchmarks/results/gpu).
set -u
OUT=${OUT:-benchmarks/results/gpu}
SECONDS_LEARN=${SECONDS_LEARN:-270}
DEVICE=${DEVICE:-cuda}
THROUGHPUT_EXTRA=${THROUGHPUT_EXTRA:-}  # a dry run on CPU: DEVICE=cpu SECONDS_LEARN=10 THROUGHPUT_EXTRA="--n-envs 2 --steps 256 --rounds 1"
mkdir -p "$OUT/pong"
export PYTHONUNBUFFERED=1
quiet() { grep -v -E "^A\.L\.E|Powered by Stella|^$" || true; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "$(nproc) CPUs, $(python3 -c 'import torch, stable_baselines3 as sb3; print("torch", torch.__version__, "SB3", sb3.__version__)')"
  timeout 250 python3 benchmarks/throughput.py --case pong --device "$DEVICE" --rounds 3 \
    --algos random,collect,a2c,ppo,vpg --update-memory $THROUGHPUT_EXTRA
  timeout 60 python3 benchmarks/throughput.py --batch-copy --device "$DEVICE"
} 2>&1 | quiet | tee "$OUT/throughput.log"
{
  timeout $((SECONDS_LEARN + 60)) python3 benchmarks/atari_curve.py --algo a2c --seconds "$SECONDS_LEARN" --device "$DEVICE" --out "$OUT/pong" &
  timeout $((SECONDS_LEARN + 60)) python3 benchmarks/atari_curve.py --algo vpg --seconds "$SECONDS_LEARN" --device "$DEVICE" --out "$OUT/pong" \
    --set n_steps=128 learning_rate=1e-3 --tag _n128 &
  timeout $((SECONDS_LEARN + 60)) python3 benchmarks/atari_curve.py --algo vpg --seconds "$SECONDS_LEARN" --device "$DEVICE" --out "$OUT/pong" \
    --set n_steps=64 learning_rate=1e-3 --tag _n64 &
  wait
} 2>&1 | quiet | tee "$OUT/learn.log"
python3 benchmarks/atari_curve.py --plot --out "$OUT/pong" 2>&1 | tee "$OUT/pong.md"
