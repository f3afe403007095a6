#!/usr/bin/env bash
# Instructions per 8-byte message, counted by callgrind (repeatable; no host noise): our
# channel (try_reserve, write, commit, try_recv, read, drop), our lossy broadcast
# (try_publish + try_recv_into) and its zero-copy publish (try_reserve, write, commit +
# try_recv_into), against rtrb 0.3's push + pop of a [u8; 8], all in one thread of one
# process (benches/examples/instructions.rs); and, for the services (issue 28), one
# 8-byte call: try_call, the server's try_receive and respond_last, the client's
# try_receive. Each scenario runs N and 2N messages inside
# the one collected function; the difference over N is the count per message, so set-up
# and warm-up cancel out. Prints one JSON line per scenario and a table with the ratios.
#
#   bash benches/instructions.sh            (N = 10000)
#   N=50000 bash benches/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
n=${N:-10000}
cargo build --release -q -p shm-benches --example instructions
bin=target/release/examples/instructions
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # scenario messages -> instructions collected inside `measured`
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" --toggle-collect='*measured*' \
        "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A per
for s in rtrb channel broadcast broadcast-reserve service; do
    a=$(count "$s" "$n")
    b=$(count "$s" $((2 * n)))
    per[$s]=$(python3 -c "print(round(($b - $a) / $n, 1))")
    echo "{\"scenario\":\"$s\",\"instructions_per_message\":${per[$s]},\"n\":$n,\"cpu\":\"$cpu\"}"
done
echo
echo "$cpu: instructions per 8-byte message (callgrind), ratio to rtrb"
echo "| scenario | instructions | ratio to rtrb |"
echo "|---|---:|---:|"
for s in rtrb channel broadcast broadcast-reserve service; do
    python3 -c "print(f'| $s | ${per[$s]} | {${per[$s]} / ${per[rtrb]}:.2f}x |')"
done
