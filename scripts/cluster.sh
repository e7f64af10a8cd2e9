#!/usr/bin/env bash
# scripts/cluster.sh -- run the ready-made local cluster of conf/cluster.lua (3 or 5 nodes).
#
#   scripts/cluster.sh start  [3|5]   start every node in the background, wait until each listens
#   scripts/cluster.sh stop   [3|5]   SIGTERM every node (SIGKILL after a grace period)
#   scripts/cluster.sh status [3|5]   which nodes run, then `moor ring` of the first node
#
# Runs from the repository root whatever the current directory: binaries from
# $MOOR_BUILD (default build/), data under data/nI, pid files and logs as
# data/nI.pid and data/nI.log.  The default size is 3.
set -eu

cd "$(dirname "$0")/.."
BUILD=${MOOR_BUILD:-build}
CMD=${1:-}
SIZE=${2:-3}
CONF=conf/cluster.lua
WAIT_S=15 # per node, to start listening or to stop

usage() {
    echo "usage: scripts/cluster.sh start|stop|status [3|5]" >&2
    exit 2
}

case "$SIZE" in 3 | 5) ;; *) usage ;; esac
[ -f "$CONF" ] || { echo "cluster.sh: $CONF is missing" >&2; exit 2; }
NAMES=$(seq -f 'n%g' 1 "$SIZE")

# The listen address of node $1 ("host:port"), as the config computes it.
addr_of() {
    "$BUILD/moord" "$CONF" --node "$1" --set size="$SIZE" --check |
        sed -n 's/.*listen \([^)]*\)).*/\1/p'
}

# The pid in data/NAME.pid if that process is still a moord, else nothing.
running_pid() {
    pidfile=data/$1.pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moord; then
        echo "$pid"
    fi
}

# 0 once host:port accepts a TCP connection.
listening() {
    timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}

start() {
    [ -x "$BUILD/moord" ] || { echo "cluster.sh: $BUILD/moord not built (make)" >&2; exit 2; }
    mkdir -p data
    for name in $NAMES; do
        if [ -n "$(running_pid "$name")" ]; then
            echo "$name: already running (pid $(running_pid "$name"))"
            continue
        fi
        nohup "$BUILD/moord" "$CONF" --node "$name" --set size="$SIZE" >>"data/$name.log" 2>&1 \
            </dev/null &
        echo $! >"data/$name.pid"
        echo "$name: started (pid $!), log data/$name.log"
    done
    rc=0
    for name in $NAMES; do
        addr=$(addr_of "$name")
        i=0
        until listening "$addr"; do
            if [ -z "$(running_pid "$name")" ]; then
                echo "$name: exited; last lines of data/$name.log:" >&2
                tail -n 5 "data/$name.log" >&2
                rc=1
                break
            fi
            i=$((i + 1))
            if [ "$i" -gt $((WAIT_S * 10)) ]; then
                echo "$name: not listening on $addr after ${WAIT_S}s" >&2
                rc=1
                break
            fi
            sleep 0.1
        done
        [ -n "$(running_pid "$name")" ] && listening "$addr" && echo "$name: listening on $addr"
    done
    return $rc
}

stop() {
    for name in $NAMES; do
        pid=$(running_pid "$name")
        if [ -z "$pid" ]; then
            echo "$name: not running"
            rm -f "data/$name.pid"
            continue
        fi
        kill -TERM "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            i=$((i + 1))
            if [ "$i" -gt $((WAIT_S * 10)) ]; then
                echo "$name: still running after ${WAIT_S}s, sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        rm -f "data/$name.pid"
        echo "$name: stopped"
    done
}

status() {
    first=
    for name in $NAMES; do
        addr=$(addr_of "$name")
        [ -n "$first" ] || first=$addr
        pid=$(running_pid "$name")
        if [ -n "$pid" ]; then
            echo "$name: running (pid $pid) on $addr"
        else
            echo "$name: not running ($addr)"
        fi
    done
    echo "ring as seen by $first:"
    "$BUILD/moor" -h "$first" ring
}

case "$CMD" in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
