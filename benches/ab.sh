#!/usr/bin/env bash
# "Nothing gets slower": today's shm-demo against the one built from another revision
# (default: the previous commit on main that touched shm-core), on the rows issue 32
# names, rounds interleaved so both see the same host: 64 B / 4 KiB / 1 MiB streams
# (memfd), the reliable fan-out to 4 subscriber processes (64 B), the loaded row (64 B
# stream with two busy-loop processes competing for the cores) and the paired round trip
# (channel p50 over the floor's, same processes). Prints one JSON object per run, then
# medians and new/old ratios (above 1: today is faster; for the round trip, below 1),
# with the CPU model.
#
#   bash benches/ab.sh REV [ROUNDS]       (ROUNDS default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bash benches/ab.sh REV [ROUNDS]}
rounds=${2:-3}
cargo build --release -q -p shm-demo
new=target/release/shm-demo
tree=$(mktemp -d)
out=$(mktemp)
hogs=()
stop_hogs() { kill "${hogs[@]}" 2>/dev/null || true; wait "${hogs[@]}" 2>/dev/null || true; hogs=(); }
trap 'stop_hogs; git worktree remove --force "$tree" 2>/dev/null || true; rm -rf "$tree" "$out"' EXIT
git worktree add -q --detach "$tree" "$rev"
# A target directory of its own, kept between runs (the old revision builds once).
abt="$PWD/target/ab"
(cd "$tree" && CARGO_TARGET_DIR="$abt" cargo build --release -q -p shm-demo)
old="$abt/release/shm-demo"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
for round in $(seq 1 "$rounds"); do
    for row in stream64 stream4k stream1m fanout4 loaded64 pingpong; do
        for which in old new; do
            bin=$old; [[ $which == new ]] && bin=$new
            case $row in
                stream64) args=(--backend memfd stream --size 64 --messages 10000000) ;;
                stream4k) args=(--backend memfd stream --size 4KiB --messages 500000) ;;
                stream1m) args=(--backend memfd stream --size 1MiB --messages 5000) ;;
                fanout4) args=(--backend memfd broadcast --subscribers 4 --size 64 --messages 1000000) ;;
                loaded64) args=(--backend memfd stream --size 64 --messages 5000000) ;;
                pingpong) args=(--backend anon pingpong --paired --round-trips 200000) ;;
            esac
            if [[ $row == loaded64 ]]; then
                for _ in 1 2; do python3 -c 'while True: pass' & hogs+=($!); done
                sleep 0.5
            fi
            line=$("$bin" "${args[@]}" --json | tail -1)
            stop_hogs
            echo "{\"row\":\"$row\",\"which\":\"$which\",\"round\":$round,\"cpu\":\"$cpu\",${line#\{}" | tee -a "$out"
        done
    done
done
python3 - "$out" "$cpu" "$rev" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu, rev = sys.argv[2], sys.argv[3]
key = {"stream64": "gib_per_s", "stream4k": "gib_per_s", "stream1m": "gib_per_s",
       "fanout4": "msgs_per_s", "loaded64": "gib_per_s", "pingpong": "ratio_p50"}
print(f"\n{cpu}: today against {rev}, medians of {max(r['round'] for r in rows)} interleaved rounds")
print("| row | measure | old | new | new/old (median of same-round ratios) |")
print("|---|---|---:|---:|---:|")
for row, k in key.items():
    o = {r["round"]: r[k] for r in rows if r["row"] == row and r["which"] == "old"}
    n = {r["round"]: r[k] for r in rows if r["row"] == row and r["which"] == "new"}
    ratio = statistics.median(n[i] / o[i] for i in o if i in n)
    print(f"| {row} | {k} | {statistics.median(o.values()):.3g} | {statistics.median(n.values()):.3g} | {ratio:.2f}x |")
PY
