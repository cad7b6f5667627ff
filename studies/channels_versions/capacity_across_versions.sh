#!/usr/bin/env bash
# EXPERIMENT: InMemory capacity of channels 4.1, 4.2 and 4.3, and of the skip-close
# consumer on 4.3, three rounds interleaved (A B C D A B C D ...) so that drift on a shared
# machine hits every variant alike. studies/channels_versions/README.md has the method and
# studies/channels_versions/capacity_table.py turns the summaries into the table.
#
# Each variant runs with a virtualenv of its own that differs only in channels:
#   VENVS=.nox/capacity-venvs (channels-4.1.0, channels-4.2.2, channels-4.3.2), built as
#   studies/channels_versions/README.md says. Run from the repository's root, under the lock:
#   flock /tmp/harness-heavy.lock studies/channels_versions/capacity_across_versions.sh OUT
set -euo pipefail
out=${1:-results/capacity-versions}
venvs=${VENVS:-.nox/capacity-venvs}
rounds=${ROUNDS:-3}
first=${FIRST_ROUND:-1}
variants=("4.1.0 async" "4.2.2 async" "4.3.2 async" "4.3.2 skip-close")
# REVERSE=1 runs the variants in the opposite order, so that a second batch shows whether
# a variant's result depends on which one ran before it.
if [[ ${REVERSE:-0} == 1 ]]; then
  variants=("4.3.2 skip-close" "4.3.2 async" "4.2.2 async" "4.1.0 async")
fi
mkdir -p "$out"
for round in $(seq "$first" $((first + rounds - 1))); do
  for variant in "${variants[@]}"; do
    read -r channels consumer <<<"$variant"
    name="channels-$channels-$consumer-$round"
    # The variant is this folder's consumer class, named by its dotted path.
    [[ $consumer == skip-close ]] && consumer=studies.channels_versions.skip_close_consumer.ChatConsumer
    echo "$(date -u +%T) $name" | tee -a "$out/progress.log"
    "$venvs/channels-$channels/bin/python" -m load capacity --layers inmemory \
      --consumer "$consumer" --ramp-steps 5 --out "$out/$name" >"$out/$name.log" 2>&1 \
      || echo "$(date -u +%T) $name FAILED" | tee -a "$out/progress.log"
  done
done
echo "$(date -u +%T) done" | tee -a "$out/progress.log"
