#!/usr/bin/env bash
# Issue 33's figures in one run, rounds interleaved, every line with the CPU model:
#  * the event round trip between two processes: ours with both sides sleeping
#    (`--spin-us 0`), a bare futex word (both sides in FUTEX_WAIT: the kernel's floor)
#    and iceoryx2 0.10's event service (`benches/iceoryx2`, built here on demand: the
#    workspace never builds iceoryx2), each with an untimed 300 µs pause before every
#    round so the answering side is asleep when it begins; and ours with the default
#    spin-then-sleep, back to back;
#  * a wait set over 64 subscribers, one publishing at a time, against waiting on that
#    one subscriber alone and against the set's fd in epoll (busy-poll spin 50 µs, and
#    sleeping with an untimed 300 µs pause before each round);
#  * the CPU an idle wait set over 100 ends uses in 10 s (once).
# Prints one JSON object per run, then medians and same-run ratios.
#
#   bash benches/events.sh [ROUNDS]      (default 5; ROUND_TRIPS=3000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
n=${ROUND_TRIPS:-3000}
source benches/iceoryx2/prepare.sh
for round in $(seq 1 "$rounds"); do
    for run in ours_sleep ours_spin floor iceoryx2 set_spin set_sleep; do
        case $run in
            ours_sleep) line=$("$demo" --backend anon event --round-trips "$n" --spin-us 0 --gap-us 300 --json) ;;
            ours_spin) line=$("$demo" --backend anon event --round-trips "$n" --json) ;;
            floor) line=$("$demo" --backend floor event --round-trips "$n" --gap-us 300 --json) ;;
            iceoryx2) line=$(IOX2_LOG_LEVEL=error "$ice" event "$n" 300 2>/dev/null | tail -1) ;;
            set_spin) line=$("$demo" --backend anon waitset --round-trips "$n" --subscribers 64 --json) ;;
            set_sleep) line=$("$demo" --backend anon waitset --round-trips $((n / 2)) --subscribers 64 --spin-us 0 --json) ;;
        esac
        echo "{\"run\":\"$run\",\"round\":$round,\"line\":$line}" | tee -a "$out"
    done
done
idle=$("$demo" --backend anon waitset --idle-ends 100 --seconds 10 --json)
echo "{\"run\":\"idle\",\"line\":$idle}" | tee -a "$out"
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    runs.setdefault(r["run"], []).append(r["line"])
med = lambda run, k: statistics.median(x[k] for x in runs[run])
cpu = runs["ours_sleep"][0]["cpu"]
print(f"\nmedians of {len(runs['ours_sleep'])} rounds, {cpu}:")
for run in ["ours_sleep", "ours_spin", "floor", "iceoryx2"]:
    print(f"  event round trip {run:10s}: p50 {med(run, 'p50_ns') / 1000:7.2f} us  p99 {med(run, 'p99_ns') / 1000:7.2f} us")
ratio = lambda a, b: statistics.median(x["p50_ns"] / y["p50_ns"] for x, y in zip(runs[a], runs[b]))
print(f"  same-run p50 ratios: ours sleeping / futex floor {ratio('ours_sleep', 'floor'):.2f}x, "
      f"iceoryx2 / futex floor {ratio('iceoryx2', 'floor'):.2f}x, "
      f"ours spin-then-sleep / iceoryx2 {ratio('ours_spin', 'iceoryx2'):.3f}x, "
      f"ours sleeping / iceoryx2 {ratio('ours_sleep', 'iceoryx2'):.2f}x")
for run in ["set_spin", "set_sleep"]:
    d, s, f = (med(run, f"{v}_p50_ns") / 1000 for v in ["direct", "set", "fd"])
    sr = statistics.median(x["set_vs_direct_p50"] for x in runs[run])
    fr = statistics.median(x["fd_vs_set_p50"] for x in runs[run])
    print(f"  wait set over 64 ({run}): direct p50 {d:.2f} us, set {s:.2f} us, fd {f:.2f} us; set/direct {sr:.2f}x, fd/set {fr:.2f}x")
i = runs["idle"][0]
print(f"  idle set over {i['ends']} ends: {i['cpu_percent']:.3f}% of a core over {i['seconds']:.1f} s")
PY
