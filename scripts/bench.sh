#!/bin/sh
# bench.sh -- runs the engine benchmark (Moor vs RocksDB vs LevelDB) that
# `make` built, passing every argument through to build/bench_engine.
#
# Defaults to --num 1000000 unless the arguments give --num.  The results
# (human table, then one JSON object per line) go to stdout and to
# build/bench-engine.txt; progress goes to stderr only.  Builds nothing.
#
# Environment: BUILD_DIR (default build), MOOR_LOG_LEVEL (default warn).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$here/build}
bin=$build/bench_engine
out=$build/bench-engine.txt

if [ ! -x "$bin" ]; then
    echo "bench.sh: $bin not found; build first (make; needs librocksdb-dev and libleveldb-dev)" >&2
    exit 1
fi

has_num=0
for arg in "$@"; do
    case $arg in
    --num | --num=*) has_num=1 ;;
    esac
done
if [ "$has_num" -eq 0 ]; then
    set -- --num 1000000 "$@"
fi

MOOR_LOG_LEVEL=${MOOR_LOG_LEVEL:-warn}
export MOOR_LOG_LEVEL

# Keep bench_engine's exit status through the pipe into tee.
status_file=$(mktemp)
trap 'rm -f "$status_file"' EXIT
{
    rc=0
    "$bin" --dir "$build/bench-data" "$@" || rc=$?
    echo "$rc" >"$status_file"
} | tee "$out"
rc=$(cat "$status_file")
echo "bench.sh: results in $out" >&2
exit "$rc"
