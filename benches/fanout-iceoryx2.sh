#!/usr/bin/env bash
# Issue 18's broadcast targets in one run, rounds interleaved:
#  * reliable fan-out to 4 subscriber processes, 64 B: ours (`shm-demo --backend memfd
#    broadcast`) against iceoryx2's publish-subscribe (`benches/iceoryx2`, built here on
#    demand: the workspace never builds iceoryx2), both with the publisher pinned to CPU 0
#    and the subscribers to CPU 1, both the slowest subscriber's rate;
#  * the lossy publisher's rate with 4 subscribers against its rate with 1.
# Prints one JSON object per run, then medians and same-run ratios; every line carries
# the CPU model.
#
#   bash benches/fanout-iceoryx2.sh [ROUNDS]      (default 5; MESSAGES=4000000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
n=${MESSAGES:-4000000}
source benches/iceoryx2/prepare.sh
for round in $(seq 1 "$rounds"); do
    for run in ours iceoryx2 lossy1 lossy4; do
        case $run in
            ours) line=$("$demo" --backend memfd broadcast --subscribers 4 --messages "$n" --size 64 --json) ;;
            iceoryx2) line=$(IOX2_LOG_LEVEL=error "$ice" "$n" 4 2>/dev/null | tail -1) ;;
            lossy1) line=$("$demo" --backend memfd broadcast --subscribers 1 --messages "$n" --size 64 --lossy --json) ;;
            lossy4) line=$("$demo" --backend memfd broadcast --subscribers 4 --messages "$n" --size 64 --lossy --json) ;;
        esac
        cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
        echo "{\"run\":\"$run\",\"round\":$round,\"cpu_model\":\"$cpu\",${line#\{}" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def vals(run, key):
    return [r[key] for r in sorted(rows, key=lambda r: r["round"]) if r["run"] == run]
ours, ice = vals("ours", "msgs_per_s"), vals("iceoryx2", "msgs_per_s")
l1, l4 = vals("lossy1", "publisher_msgs_per_s"), vals("lossy4", "publisher_msgs_per_s")
print(f"\n{rows[0]['cpu_model']}: medians of {len(ours)} interleaved rounds, {rows[0]['messages']} messages of 64 B")
print("| what | per round | median | same-run ratio per round | median ratio |")
print("|---|---|---:|---|---:|")
def row(name, a, b=None, unit=1e6):
    ratios = [x / y for x, y in zip(a, b)] if b else []
    print(f"| {name} | {' / '.join(f'{v / unit:.2f}' for v in a)} M/s | {statistics.median(a) / unit:.2f} M/s | "
          + (" / ".join(f"{r:.2f}x" for r in ratios) + f" | {statistics.median(ratios):.2f}x |" if ratios else " | |"))
row("reliable fan-out to 4, ours (slowest subscriber)", ours, ice)
row("reliable fan-out to 4, iceoryx2 (slowest subscriber)", ice)
row("lossy publisher, 4 subscribers (vs 1)", l4, l1)
row("lossy publisher, 1 subscriber", l1)
PY
