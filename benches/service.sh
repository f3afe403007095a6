#!/usr/bin/env bash
# Issue 28's figures in one run, rounds interleaved, every line with the CPU model:
#  * the 64-byte call round trip, one client and one server process (pinned to CPUs 0
#    and 1): ours busy-polling (`service run --spin`) and blocking (spin 50 us, then
#    sleep), against our own channel ping-pong of 64 bytes in the same modes (`pingpong
#    --size 64 --wait spin|block`), iceoryx2 0.10's request-response busy-polling
#    (`benches/iceoryx2`, built here on demand: the workspace never builds iceoryx2) and
#    a Unix-socket request/response (`pingpong --backend unix --size 64`);
#  * throughput, 4 clients x 2 servers, 64 B and 64 KiB;
#  * scaling with 10 us of work per request, 4 clients, 1, 2 and 4 servers (clients
#    spinning 50 us then sleeping, and clients sleeping at once: --client-spin-us 0).
# Prints one JSON object per run, then medians and same-run ratios.
#
#   bash benches/service.sh [ROUNDS]      (default 5; CALLS=20000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
n=${CALLS:-20000}
source benches/iceoryx2/prepare.sh
for round in $(seq 1 "$rounds"); do
    for run in svc_spin chan_spin ice unix svc_block chan_block tp64 tp64k s1 s2 s4 s1_sleep s2_sleep s4_sleep; do
        case $run in
            svc_spin) line=$("$demo" --backend anon service run --calls "$n" --spin --json) ;;
            chan_spin) line=$("$demo" --backend anon pingpong --round-trips "$n" --size 64 --json | tail -1) ;;
            ice) line=$(IOX2_LOG_LEVEL=error "$ice" reqres "$n" 2>/dev/null | tail -1) ;;
            unix) line=$("$demo" --backend unix pingpong --round-trips "$n" --size 64 --json | tail -1) ;;
            svc_block) line=$("$demo" --backend anon service run --calls "$n" --json) ;;
            chan_block) line=$("$demo" --backend anon pingpong --round-trips "$n" --size 64 --wait block --json | tail -1) ;;
            tp64) line=$("$demo" --backend anon service run --clients 4 --servers 2 --calls $((n * 2)) --size 64 --json) ;;
            tp64k) line=$("$demo" --backend anon service run --clients 4 --servers 2 --calls $((n / 4)) --size 64KiB --json) ;;
            s1|s2|s4) line=$("$demo" --backend anon service run --clients 4 --servers "${run#s}" --calls $((n / 2)) --work-us 10 --json) ;;
            s1_sleep|s2_sleep|s4_sleep) s=${run#s}; s=${s%_sleep}
                line=$("$demo" --backend anon service run --clients 4 --servers "$s" --calls $((n / 2)) --work-us 10 --client-spin-us 0 --json) ;;
        esac
        echo "{\"run\":\"$run\",\"round\":$round,\"line\":$line}" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    runs.setdefault(r["run"], []).append(r["line"])
med = lambda run, k: statistics.median(x[k] for x in runs[run])
cpu = runs["svc_spin"][0]["cpu"]
print(f"\nmedians of {len(runs['svc_spin'])} rounds, {cpu}:")
for run in ["svc_spin", "chan_spin", "ice", "unix", "svc_block", "chan_block"]:
    print(f"  64-byte round trip {run:10s}: p50 {med(run, 'p50_ns') / 1000:6.2f} us  p99 {med(run, 'p99_ns') / 1000:6.2f} us")
ratio = lambda a, b: statistics.median(x["p50_ns"] / y["p50_ns"] for x, y in zip(runs[a], runs[b]))
print(f"  same-run p50 ratios: call / channel ping-pong (busy-poll) {ratio('svc_spin', 'chan_spin'):.2f}x, "
      f"(blocking) {ratio('svc_block', 'chan_block'):.2f}x; call / iceoryx2 request-response {ratio('svc_spin', 'ice'):.2f}x; "
      f"call / Unix socket {ratio('svc_spin', 'unix'):.2f}x")
for run in ["tp64", "tp64k"]:
    print(f"  4 clients x 2 servers, {runs[run][0]['size']} B: {med(run, 'calls_per_s'):,.0f} calls/s (p50 {med(run, 'p50_ns') / 1000:.1f} us)")
for tag in ["", "_sleep"]:
    rates = {s: med(f"s{s}{tag}", "calls_per_s") for s in (1, 2, 4)}
    r2 = statistics.median(x["calls_per_s"] / y["calls_per_s"] for x, y in zip(runs[f"s2{tag}"], runs[f"s1{tag}"]))
    print(f"  10 us of work, 4 clients{' sleeping at once' if tag else ''}: 1 server {rates[1]:,.0f}/s, 2 {rates[2]:,.0f}/s, 4 {rates[4]:,.0f}/s; 2 servers / 1 (same run) {r2:.2f}x")
PY
