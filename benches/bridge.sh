#!/usr/bin/env bash
# What the Zenoh bridge adds to Zenoh, in one run: plain Zenoh pub/sub between two
# processes, the bridge end to end (publisher -> exporter -> Zenoh -> importer ->
# subscriber, four processes), and our local broadcast, at 64 B, 4 KiB and 1 MiB; and the
# 64-byte round trip over plain Zenoh and through export + import; a 64-byte service
# call through export-service + import-service against a plain Zenoh get. ROUNDS interleaved
# rounds (default 3); prints one JSON line per measurement, then medians and ratios.
#
#   bash benches/bridge.sh            # writes target/bridge-bench.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
cargo build --release -q -p shm-demo
D=target/release/shm-demo
OUT=target/bridge-bench.jsonl
: >"$OUT"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores" | tee -a "$OUT.txt"
for r in $(seq 1 "$ROUNDS"); do
  for spec in "64 200000" "4KiB 50000" "1MiB 300"; do
    set -- $spec
    size=$1 n=$2
    echo "{\"round\":$r,\"kind\":\"raw\",\"size\":\"$size\",\"r\":$($D bridge bench --what raw --messages "$n" --size "$size")}" >>"$OUT"
    echo "{\"round\":$r,\"kind\":\"bridge\",\"size\":\"$size\",\"r\":$($D --backend posix broadcast --via zenoh --subscribers 1 --messages "$n" --size "$size" --json)}" >>"$OUT"
    echo "{\"round\":$r,\"kind\":\"local\",\"size\":\"$size\",\"r\":$($D --backend posix broadcast --subscribers 1 --messages "$n" --size "$size" --json)}" >>"$OUT"
  done
  echo "{\"round\":$r,\"kind\":\"rtt-raw\",\"size\":\"64\",\"r\":$($D bridge bench --what rtt-raw --messages 2000 --size 64)}" >>"$OUT"
  echo "{\"round\":$r,\"kind\":\"rtt-bridge\",\"size\":\"64\",\"r\":$($D bridge bench --what rtt-bridge --messages 2000 --size 64)}" >>"$OUT"
  # The latency configuration: exporters and subscribers spin up to 1 ms before they sleep.
  echo "{\"round\":$r,\"kind\":\"rtt-bridge-spin\",\"size\":\"64\",\"r\":$($D bridge bench --what rtt-bridge --spin-us 1000 --messages 2000 --size 64)}" >>"$OUT"
  # A service call through export-service + import-service, against a plain Zenoh get
  # to a queryable that answers with the request's bytes (both 64 B).
  echo "{\"round\":$r,\"kind\":\"rtt-get\",\"size\":\"64\",\"r\":$($D bridge bench --what rtt-get --messages 2000 --size 64)}" >>"$OUT"
  echo "{\"round\":$r,\"kind\":\"rtt-service\",\"size\":\"64\",\"r\":$($D bridge bench --what rtt-service --messages 2000 --size 64)}" >>"$OUT"
  echo "round $r done" >&2
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(kind, size, key):
    v = [r["r"][key] for r in rows if r["kind"] == kind and r["size"] == size]
    return statistics.median(v) if v else float("nan"), v
print(f"{'size':>6} {'raw zenoh msg/s':>16} {'bridge msg/s':>14} {'bridge/raw':>10} {'local msg/s':>14}  (all rounds: raw | bridge)")
for size in ["64", "4KiB", "1MiB"]:
    raw, rv = med("raw", size, "msgs_per_s")
    br, bv = med("bridge", size, "msgs_per_s")
    lo, _ = med("local", size, "msgs_per_s")
    print(f"{size:>6} {raw:>16.0f} {br:>14.0f} {br/raw:>10.2f} {lo:>14.0f}  ({' '.join(f'{x:.0f}' for x in rv)} | {' '.join(f'{x:.0f}' for x in bv)})")
rr, rv = med("rtt-raw", "64", "p50_ns")
rb, bv = med("rtt-bridge", "64", "p50_ns")
rs, sv = med("rtt-bridge-spin", "64", "p50_ns")
print(f"64 B round trip p50: raw zenoh {rr/1000:.0f} us, bridge {rb/1000:.0f} us ({rb/rr:.2f}x), bridge spinning 1 ms {rs/1000:.0f} us ({rs/rr:.2f}x)")
print(f"  rounds: raw {rv} | bridge {bv} | spin {sv}")
rg, gv = med("rtt-get", "64", "p50_ns")
rsv, svv = med("rtt-service", "64", "p50_ns")
print(f"64 B call p50: zenoh get {rg/1000:.0f} us, service through the bridge {rsv/1000:.0f} us ({rsv/rg:.2f}x)")
print(f"  rounds: get {gv} | service {svv}")
PY
