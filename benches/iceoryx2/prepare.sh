# Sourced by the benchmark scripts that compare against iceoryx2 (from the workspace
# root): builds the demo and `icebench` (`benches/iceoryx2`, on demand: the workspace
# never builds iceoryx2), sets `$demo`, `$ice` and `$out` (a temporary file), and
# removes on exit what iceoryx2 added to /dev/shm and /tmp (it keeps a node-management
# file in the one and state in the other), so a benchmark leaves nothing behind.
cargo build --release -q -p shm-demo
(cd benches/iceoryx2 && CARGO_TARGET_DIR=../../target/iceoryx2 cargo build --release -q)
demo=target/release/shm-demo
ice=target/iceoryx2/release/icebench
out=$(mktemp)
shm_before=$(ls /dev/shm)
had_tmp=$([ -e /tmp/iceoryx2 ] && echo yes || echo no)
cleanup() {
    rm -f "$out"
    for f in /dev/shm/iox2_*; do
        if [ -e "$f" ] && ! grep -qxF "$(basename "$f")" <<<"$shm_before"; then rm -f "$f"; fi
    done
    if [ "$had_tmp" = no ]; then rm -rf /tmp/iceoryx2; fi
}
trap cleanup EXIT
