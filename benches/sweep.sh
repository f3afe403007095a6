#!/usr/bin/env bash
# Measures how cost grows with message size, every backend in the same run:
#   stream throughput for 8 B .. 16 MiB messages (floor, memfd, posix, anon, unix), and
#   round-trip latency for 8 B .. 64 KiB payloads (floor, memfd, posix, anon, unix, pipe).
# Rounds are interleaved (every backend and size once per round) so that drift on a shared
# machine hits all of them alike; the chart command takes the median of the rounds.
#
#   bash benches/sweep.sh [ROUNDS]        (default 3; about a minute a round)
#   cargo run --release -p shm-benches --bin charts     # tables + SVGs from the results
#
# Writes benches/results/stream.jsonl and benches/results/pingpong.jsonl, one JSON object
# a line as `shm-demo ... --json` prints it, plus a "round" field.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q -p shm-demo
demo=target/release/shm-demo
out=benches/results
mkdir -p "$out"
: >"$out/stream.jsonl"
: >"$out/pingpong.jsonl"
for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds" >&2
    for size in 8 64 512 4096 65536 1048576 16777216; do
        # About 1 GiB a run, at least 100 and at most 2,000,000 messages.
        messages=$(( (1 << 30) / size ))
        (( messages > 2000000 )) && messages=2000000
        (( messages < 100 )) && messages=100
        for backend in floor memfd posix anon unix; do
            line=$("$demo" --backend "$backend" stream --messages "$messages" --size "$size" --json)
            echo "${line%\}},\"round\":$round}" >>"$out/stream.jsonl"
        done
    done
    for size in 8 64 512 4096 65536; do
        for backend in floor memfd posix anon unix pipe; do
            line=$("$demo" --backend "$backend" pingpong --round-trips 50000 --size "$size" --json)
            echo "${line%\}},\"round\":$round}" >>"$out/pingpong.jsonl"
        done
    done
done
echo "wrote $out/stream.jsonl and $out/pingpong.jsonl" >&2
