#!/usr/bin/env bash
# Issue 18's loaded row: streams while two busy-loop processes at normal priority compete
# for the cores (`python3 -c 'while True: pass'`, so every process gets about half a core
# on a 2-CPU machine). Each round runs the 64-byte stream unloaded (ours and the floor),
# then starts the hogs and runs 64 B and 1 MiB streams for ours (memfd), the floor and a
# Unix socket, then stops them. Prints one JSON object per run, then medians and the
# ratios the issue names: ours loaded / ours unloaded (same round), ours / Unix socket
# under the same load; every line carries the CPU model.
#
#   bash benches/loaded.sh [ROUNDS]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q -p shm-demo
demo=target/release/shm-demo
out=$(mktemp)
hogs=()
stop_hogs() { kill "${hogs[@]}" 2>/dev/null || true; wait "${hogs[@]}" 2>/dev/null || true; hogs=(); }
trap 'stop_hogs; rm -f "$out"' EXIT
run() { # label load backend messages size
    local line
    line=$("$demo" --backend "$3" stream --messages "$4" --size "$5" --json)
    echo "{\"run\":\"$1\",\"load\":\"$2\",\"round\":$round,${line#\{}" | tee -a "$out"
}
for round in $(seq 1 "$rounds"); do
    run ours unloaded memfd 10000000 64
    run floor unloaded floor 10000000 64
    for _ in 1 2; do python3 -c 'while True: pass' & hogs+=($!); done
    sleep 1
    run ours hogs memfd 10000000 64
    run floor hogs floor 10000000 64
    run unix hogs unix 300000 64
    run ours hogs memfd 2000 1048576
    run floor hogs floor 2000 1048576
    run unix hogs unix 500 1048576
    stop_hogs
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def per_round(run, load, size, key="msgs_per_s"):
    return [r[key] for r in sorted(rows, key=lambda r: r["round"]) if r["run"] == run and r["load"] == load and r["size"] == size]
print(f"\n{rows[0]['cpu']}, {rows[0]['cores']} CPUs, two busy-loop hogs: {max(r['round'] for r in rows)} rounds")
print("| what | per round | median |")
print("|---|---|---:|")
for run in ["ours", "floor"]:
    u, h = per_round(run, "unloaded", 64), per_round(run, "hogs", 64)
    print(f"| {run} 64 B unloaded, M msg/s | {' / '.join(f'{v/1e6:.2f}' for v in u)} | {statistics.median(u)/1e6:.2f} |")
    print(f"| {run} 64 B under the hogs, M msg/s | {' / '.join(f'{v/1e6:.2f}' for v in h)} | {statistics.median(h)/1e6:.2f} |")
    rat = [b / a for a, b in zip(u, h)]
    print(f"| {run} 64 B loaded / unloaded (same round) | {' / '.join(f'{x:.2f}x' for x in rat)} | {statistics.median(rat):.2f}x |")
x = per_round("unix", "hogs", 64)
o = per_round("ours", "hogs", 64)
print(f"| Unix socket 64 B under the hogs, M msg/s | {' / '.join(f'{v/1e6:.3f}' for v in x)} | {statistics.median(x)/1e6:.3f} |")
rat = [a / b for a, b in zip(o, x)]
print(f"| ours / Unix socket, 64 B, under the hogs | {' / '.join(f'{v:.0f}x' for v in rat)} | {statistics.median(rat):.0f}x |")
for run in ["ours", "floor", "unix"]:
    v = per_round(run, "hogs", 1048576, "gib_per_s")
    print(f"| {run} 1 MiB under the hogs, GiB/s | {' / '.join(f'{g:.2f}' for g in v)} | {statistics.median(v):.2f} |")
PY
