#!/bin/sh
# scripts/scaler.sh -- the local scaler of moor.autoscale{} (README "Automatic
# scaling"): `scaler.sh add` starts one more moord on the next free 127.0.0.x,
# `scaler.sh remove [ID]` makes node ID (default $MOOR_NODE) leave and stops it.
# The work is done by scaler.py beside it (it parses the nodes' JSON answers);
# see its header for the environment it reads.
exec /usr/bin/python3 "$(dirname "$0")/scaler.py" "$@"
