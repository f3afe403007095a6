#!/usr/bin/env bash
# Issue 32's large-message figures in one run, rounds interleaved (memfd, 1 MiB):
#  * warm-up: a fresh stream's first 3,000 messages (`stream --messages 3000`: a new
#    process and a new segment, so page faults and cold caches are all in it) against
#    the same stream at steady state (30,000 messages);
#  * zero-copy publish: a reliable broadcast to 2 subscriber processes, the publisher
#    writing each message into its slot (`--zero-copy`: reserve, write, commit) or
#    copying it in (`publish`), against the channel's 1 MiB stream; per subscriber, and
#    both subscribers together (on a 2-core host the two subscribers share one core,
#    where the channel's receiver has one to itself).
# Prints one JSON object per run, then medians and same-run ratios, with the CPU model.
#
#   bash benches/large.sh [ROUNDS]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release -q -p shm-demo
demo=target/release/shm-demo
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq 1 "$rounds"); do
    for run in first3000 steady broadcast zero-copy; do
        case $run in
            first3000) args=(stream --size 1MiB --messages 3000) ;;
            steady) args=(stream --size 1MiB --messages 30000) ;;
            broadcast) args=(broadcast --subscribers 2 --size 1MiB --messages 10000) ;;
            zero-copy) args=(broadcast --subscribers 2 --size 1MiB --messages 10000 --zero-copy) ;;
        esac
        line=$("$demo" --backend memfd "${args[@]}" --json)
        echo "{\"run\":\"$run\",\"round\":$round,\"cpu\":\"$cpu\",${line#\{}" | tee -a "$out"
    done
done
python3 - "$out" "$cpu" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = sys.argv[2]
def med(run):
    return statistics.median(r["gib_per_s"] for r in rows if r["run"] == run)
def ratios(a, b):
    by = lambda run: {r["round"]: r["gib_per_s"] for r in rows if r["run"] == run}
    x, y = by(a), by(b)
    return statistics.median(x[k] / y[k] for k in x if k in y)
n = max(r["round"] for r in rows)
print(f"\n{cpu}: medians of {n} interleaved rounds, memfd, 1 MiB messages, GiB/s")
print("| what | GiB/s | median same-round ratio |")
print("|---|---:|---:|")
print(f"| stream, first 3,000 messages of a fresh stream | {med('first3000'):.2f} | {ratios('first3000', 'steady'):.2f}x steady |")
print(f"| stream, 30,000 messages (steady) | {med('steady'):.2f} | 1.00x |")
for run, label in [("broadcast", "publish (copied in)"), ("zero-copy", "reserve/write/commit")]:
    print(f"| broadcast to 2, {label}, per subscriber | {med(run):.2f} | {ratios(run, 'steady'):.2f}x channel |")
    both = statistics.median(2 * r["gib_per_s"] / s["gib_per_s"] for r in rows if r["run"] == run
                             for s in rows if s["run"] == "steady" and s["round"] == r["round"])
    print(f"| broadcast to 2, {label}, both subscribers | {2 * med(run):.2f} | {both:.2f}x channel |")
PY
