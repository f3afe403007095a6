#!/usr/bin/env bash
# Issue 30's benchmark: the 64-byte round trip p50 C++ <-> C++ through the C API
# (shm-c/examples/pingpong.cpp, over shm.hpp and libshm_c.so, release) against Rust <->
# Rust (`shm-demo --backend posix pingpong --wait block --size 64`, the same backend and
# the same wait: spin briefly, then sleep), both pinned to CPUs 0 and 1, rounds
# interleaved. Prints one JSON object per run, then the medians and the median of the
# same-round ratios, with the CPU model.
#
#   bash benches/c-pingpong.sh [ROUNDS]     (default 5; ROUND_TRIPS=100000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
n=${ROUND_TRIPS:-100000}
cargo build --release -q -p shm-demo
prefix=$PWD/target/c-prefix
bash shm-c/install.sh "$prefix" >/dev/null
pp=$prefix/pingpong
c++ -std=c++17 -O2 shm-c/examples/pingpong.cpp \
    $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs shm) -o "$pp"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq 1 "$rounds"); do
    line=$("$pp" "$n" 64)
    echo "{\"run\":\"c++\",\"round\":$round,\"cpu\":\"$cpu\",${line#\{}" | tee -a "$out"
    line=$(target/release/shm-demo --backend posix pingpong --wait block --size 64 --round-trips "$n" --json | tail -1)
    echo "{\"run\":\"rust\",\"round\":$round,\"cpu\":\"$cpu\",${line#\{}" | tee -a "$out"
done
python3 - "$out" "$cpu" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = lambda run: {r["round"]: r["p50_ns"] for r in rows if r["run"] == run}
c, r = by("c++"), by("rust")
ratio = statistics.median(c[k] / r[k] for k in c if k in r)
print(f"\n{sys.argv[2]}: 64-byte round trip p50, posix, spin then sleep, medians of {len(c)} interleaved rounds")
print(f"C++ through the C API: {statistics.median(c.values()):.0f} ns; Rust: {statistics.median(r.values()):.0f} ns; C++/Rust {ratio:.2f}x")
PY
