#!/bin/sh
# The README's "Faults" table: every fault kind on every layer it applies to, 3 runs each
# (medians). Run it under the machine's heavy-work lock:
#   flock /tmp/harness-heavy.lock studies/faults/faults_matrix.sh results/faults
# Each kind is its own bench, so one that fails leaves the others' results.
# ONLY='backend-restart-*' runs the benches whose name matches that pattern.
set -u
OUT=${1:-results/faults}
PY=${PYTHON:-python}
SHAPE="--users 20 --rooms 4 --rate 2 --duration 10 --drain 3 --fault-at 3 --fault-for 3 --repeat 3"
run() {
    name=$1; shift
    case "$name" in ${ONLY:-*}) ;; *) return 0 ;; esac
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
# Each layer's own server restarted, on both ASGI servers; one bench per layer, so a layer
# that cannot start leaves the others' results. 20 s of sending: RabbitMQ takes about 5 s
# to start again, and its reconnect and the late deliveries need time to show.
for layer in redis redis-pubsub postgres rabbitmq nats valkey; do
    run "backend-restart-$layer" --fault backend-restart --layers "$layer" --asgi daphne,uvicorn \
        --duration 20
done
# One slow reader per room, each sent 5 x 2 x 50 kB/s, for 5 s.
run slow-reader --fault slow-reader --layers inmemory,redis,redis-pubsub --slow-share 0.2 \
    --message-bytes 50000 --fault-for 5
