#!/usr/bin/env bash
# Issue 18's stream targets in one run: 64 B, 4 KiB and 1 MiB streams over memfd and
# posix with the demo's default ring (sized to this machine's caches), against the floor
# (the best plain two-process copy ring of 2 to 256 slots, found by `--backend floor`)
# and against the channel with the old default ring (room for 8 messages, at least
# 1 MiB: `--ring`), in interleaved rounds. Prints one JSON object per run, then a table of
# medians and same-run ratios; every line carries the CPU model.
#
#   bash benches/stream-floor.sh [ROUNDS]       (default 3)
#   HOGS=2 bash benches/stream-floor.sh          (with two busy-loop processes running)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q -p shm-demo
demo=target/release/shm-demo
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
out=$(mktemp)
hogs=()
for _ in $(seq 1 "${HOGS:-0}"); do
    python3 -c 'while True: pass' & hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null || true; rm -f "$out"' EXIT
old_ring() { # the demo's old default: room for 8 messages, 1 MiB to 256 MiB
    local r=$(( ($1 + 8) * 8 )) p=1
    while (( p < r )); do p=$(( p * 2 )); done
    (( p < 1048576 )) && p=1048576
    (( p > 268435456 )) && p=268435456
    echo $p
}
for round in $(seq 1 "$rounds"); do
    for size in 64 4096 1048576; do
        messages=$(( (4 << 30) / size )); (( messages > 20000000 )) && messages=20000000
        for run in floor memfd posix memfd-oldring unix; do
            n=$messages
            case $run in
                memfd-oldring) args=(--backend memfd stream --ring "$(old_ring "$size")") ;;
                # A socket is 20-50x slower: a tenth of the messages is plenty.
                unix) args=(--backend unix stream); n=$(( messages / 10 )) ;;
                *) args=(--backend "$run" stream) ;;
            esac
            line=$("$demo" "${args[@]}" --messages "$n" --size "$size" --json)
            echo "{\"run\":\"$run\",\"round\":$round,\"hogs\":${HOGS:-0},${line#\{}" | tee -a "$out"
        done
    done
done
python3 - "$out" "$cpu" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = sys.argv[2]
def med(run, size, key="gib_per_s"):
    v = [r[key] for r in rows if r["run"] == run and r["size"] == size]
    return statistics.median(v) if v else float("nan")
print(f"\n{cpu}, {rows[0]['cores']} cores, hogs {rows[0]['hogs']}: medians of {max(r['round'] for r in rows)} rounds, GiB/s (ratio to the floor)")
print("| size | floor (depth) | memfd | posix | memfd, old ring | unix |")
print("|---|---:|---:|---:|---:|---:|")
for size in sorted({r["size"] for r in rows}):
    f = med("floor", size)
    depth = statistics.median([r["depth"] for r in rows if r["run"] == "floor" and r["size"] == size])
    cells = [f"{f:.2f} ({int(depth)} slots)"]
    for run in ["memfd", "posix", "memfd-oldring", "unix"]:
        m = med(run, size)
        cells.append(f"{m:.2f} ({m / f:.2f}x)")
    label = {64: "64 B", 4096: "4 KiB", 1048576: "1 MiB"}.get(size, str(size))
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
