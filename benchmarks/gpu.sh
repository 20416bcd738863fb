#!/usr/bin/env bash
# The GPU figures of the speed issue, as one prepared script for a lent GPU machine (H100/H200),
# sized to finish well inside 8 minutes of device time. Run from the repository root:
#     bash benchmarks/gpu.sh            # writes benchmarks/_data/gpu/*.log and *.json
# It installs the CUDA extra into .venv (or the active Python), then measures
#   1. offline updates/s at the paper's configuration (embed 512, B=480, T=20, rware, N=8 agent
#      slots) for BC and Oryx, S=1 and S=3 seeds in one program, with the loader's ms/batch
#      beside it (target: >= 10 updates/s; the paper: 60k updates in < 18 h on an A100 = 0.93/s),
#      and BC's S=3 with the seeds one after another instead of vmapped (the CPU's program);
#   2. online Sable env steps/s on rware/tiny-2ag with the paper profile: one update per call
#      against several, beside the learning half alone and random stepping.
# Copy the printed tables into benchmarks/RESULTS.md with the device named.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/_data/gpu
mkdir -p "$OUT"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[cuda]'
"$PY" -c "import jax; print(jax.devices()); assert jax.default_backend() == 'gpu'" | tee "$OUT/devices.log"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv | tee -a "$OUT/devices.log"
timeout 300 "$PY" benchmarks/offline.py throughput --env rware --pad 8 --embeds 512 --batch 480 \
    --seq 20 --algorithms bc oryx --seeds 1 3 --timed-updates 50 2>&1 | tee "$OUT/offline.log"
cp benchmarks/_data/offline.json "$OUT/offline.json"
# the trainer vmaps several seeds off CPU (`over_seeds`); the same S=3 run one seed after another
timeout 90 "$PY" benchmarks/offline.py throughput --env rware --pad 8 --embeds 512 --batch 480 \
    --seq 20 --algorithms bc --seeds 3 --seed-program map --timed-updates 20 2>&1 \
    | tee "$OUT/offline_seeds_map.log" || true
timeout 150 "$PY" benchmarks/online_dispatch.py rware/tiny-2ag --profile paper --updates 20 \
    --repeats 2 2>&1 | tee "$OUT/online.log"
cp benchmarks/_data/online_dispatch_rware_tiny-2ag.json "$OUT/"
