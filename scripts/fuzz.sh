#!/bin/sh
# Seed and run every virtmesh-conf fuzz target, one after another, for N
# seconds each (default 600).  Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Logs go to fuzz/logs/<target>.log; a finding stops the run with the
# reproducer under fuzz/artifacts/<target>/ and a non-zero exit.
set -eu
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-$(cargo +nightly fuzz list)}
./seed.sh >/dev/null
mkdir -p logs
for t in $targets; do
    echo "== $t: ${secs}s"
    dict=""
    [ -s "corpus/$t.dict" ] && dict="-dict=corpus/$t.dict"
    # libFuzzer's default is one process on one core (no -jobs/-workers:
    # those fork children that log to fuzz-N.log instead); limits make a hang
    # (10 s per input) or unbounded allocation (512 MB at once, 2 GB
    # resident) a finding, not just slowness.
    cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 $dict >"logs/$t.log" 2>&1 || {
        echo "!! $t: finding, see fuzz/logs/$t.log and fuzz/artifacts/$t/"
        exit 1
    }
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "logs/$t.log" || true
done
