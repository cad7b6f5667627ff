#!/usr/bin/env bash
# channels-valkey and channels-lite beside channels-redis's core layer, in one run, and
# valkey-server restarted (3 runs on Daphne and Uvicorn).
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-results/new-layers}
mkdir -p $OUT
date -u +"%H:%M:%S capacity start" >> $OUT/chain.log
flock /tmp/harness-heavy.lock ${PYTHON:-python} -m load capacity --layers redis,valkey,sqlite \
   --asgi daphne,uvicorn --repeat 3 --out $OUT/capacity > $OUT/capacity.log 2>&1
date -u +"%H:%M:%S capacity end rc=$?" >> $OUT/chain.log
ONLY='backend-restart-valkey' flock /tmp/harness-heavy.lock studies/faults/faults_matrix.sh $OUT/faults > $OUT/faults.log 2>&1
date -u +"%H:%M:%S faults end rc=$?" >> $OUT/chain.log
