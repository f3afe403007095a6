#!/usr/bin/env bash
# Broadcast throughput for BENCHMARKS.md, every row in the same run, rounds interleaved:
# 1, 2 and 4 subscriber processes; 64 B, 4 KiB and 1 MiB messages; reliable and lossy on
# memfd; the same over N Unix sockets; and the SPSC channel (`stream`) as the 1-to-1
# reference. Medians and tables: `cargo run --release -p shm-benches --bin charts`.
#
#   bash benches/broadcast-sweep.sh [ROUNDS]      (default 3; about 30 s a round)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q -p shm-demo
demo=target/release/shm-demo
out=benches/results/broadcast.jsonl
mkdir -p benches/results
: >"$out"
for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds" >&2
    for size in 64 4096 1048576; do
        case $size in 64) n=1000000 ;; 4096) n=200000 ;; *) n=2000 ;; esac
        line=$("$demo" --backend memfd stream --messages "$n" --size "$size" --json)
        echo "${line%\}},\"round\":$round,\"kind\":\"channel\"}" >>"$out"
        for subs in 1 2 4; do
            for mode in reliable lossy unix; do
                case $mode in
                    reliable) args=(--backend memfd) ;;
                    lossy) args=(--backend memfd --lossy) ;;
                    unix) args=(--backend unix) ;;
                esac
                # shellcheck disable=SC2068
                line=$("$demo" ${args[@]:0:2} broadcast --subscribers "$subs" --messages "$n" --size "$size" ${args[@]:2} --json)
                echo "${line%\}},\"round\":$round,\"kind\":\"broadcast\"}" >>"$out"
            done
        done
    done
done
echo "wrote $out" >&2
