#!/bin/sh
# The README's "Faults" table: every fault kind on every layer it applies to, 3 runs each
# (medians). Run it under the machine's heavy-work lock:
#   flock /tmp/harness-heavy.lock load/experiments/faults_matrix.sh results/faults
# Each kind is its own bench, so one that fails leaves the others' results.
set -u
OUT=${1:-results/faults}
PY=${PYTHON:-python}
SHAPE="--users 20 --rooms 4 --rate 2 --duration 10 --drain 3 --fault-at 3 --fault-for 3 --repeat 3"
run() {
    name=$1; shift
    echo "== $name: $*"
    $PY -m load bench $SHAPE "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1
    echo "   exit $? ($OUT/$name.log)"
}
mkdir -p "$OUT"
run redis-restart --fault redis-restart --layers redis,redis-pubsub
run redis-stall --fault redis-stall --layers redis,redis-pubsub
run redis-failover --fault redis-failover --layers redis,redis-pubsub
run server-kill-inmemory --fault server-kill --layers inmemory
run server-kill-redis --fault server-kill --layers redis,redis-pubsub --servers 2
# One slow reader per room, each sent 5 x 2 x 50 kB/s, for 5 s.
run slow-reader --fault slow-reader --layers inmemory,redis,redis-pubsub --slow-share 0.2 \
    --message-bytes 50000 --fault-for 5
