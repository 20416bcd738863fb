#!/usr/bin/env bash
# `make demo` as a new machine runs it: a fresh clone of a commit, no .venv, and every user
# cache empty (uv's and pip's downloads, JAX's compilation cache, matplotlib's fonts), with
# the wall time and the machine's CPU time (all processes, from /proc/stat) it took.
#     bash benchmarks/demo_fresh.sh [COMMIT]      # default HEAD; prints one line at the end
# The clone stays in a temporary folder (printed) for its lake, report and Dagster instance.
# The caches are emptied by pointing XDG_CACHE_HOME at a new folder, not by deleting yours;
# uv's and the JAX cache's own variables are set too, in case yours name other folders.
# Stop other heavy work first: the figure is the machine's CPU, and two cores are shared.
set -euo pipefail
commit=${1:-HEAD}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -t sable-demo-XXXXXX)
git clone --quiet "$repo" "$work/sable-lake"
git -C "$work/sable-lake" checkout --quiet "$(git -C "$repo" rev-parse "$commit")"
mkdir "$work/cache"

busy() {  # jiffies the machine spent outside idle and iowait
    read -r _ user nice system _ _ irq softirq steal _ < /proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}
load=$(cut -d" " -f1 /proc/loadavg)
before=$(busy)
start=$(date +%s.%N)
status=0
(cd "$work/sable-lake" && XDG_CACHE_HOME="$work/cache" UV_CACHE_DIR="$work/cache/uv" \
    SABLE_JAX_CACHE="$work/cache/jax" make demo) > "$work/demo.log" 2>&1 || status=$?
end=$(date +%s.%N)
after=$(busy)
tail -n 25 "$work/demo.log"
echo "make demo at $(git -C "$work/sable-lake" rev-parse --short HEAD): exit $status," \
    "wall $(awk "BEGIN {printf \"%.0f\", $end - $start}") s," \
    "CPU $(( (after - before) / $(getconf CLK_TCK) )) s (machine-wide)," \
    "$(nproc) CPUs, load average $load before; log $work/demo.log"
exit "$status"
