#!/usr/bin/env bash
# Soak (issue 15): a closed model and an open model at a modest rate, each for DURATION seconds
# on a cluster of 3 workers, one worker SIGKILLed and restarted on its port in the middle
# (halt.on_worker_lost: rejoin). Records the RSS of the master and of every worker every 10 s
# and the sizes of the output files; checks that the report's totals match nginx's count (the
# killed process's requests after its last Stats aside, inside the report's estimate) and that
# RSS grows less than 5 % after warm-up.
#
#   bash tests/bench/soak.sh [BUILD_DIR]                 # 30 minutes per model
#   DURATION=180 bash tests/bench/soak.sh                # a quick look
#
# Knobs: DURATION (1800 s per model), MODELS ("closed open"), RATE (100/s, open model), USERS
# (10, closed model, 100 ms think: ~100/s), WARMUP (10 % of DURATION, at least 30 s),
# SAMPLE (10 s). Everything listens on 127.0.0.1; not part of `make test`.
# Results: BUILD_DIR/bench/soak/<model>/{rss.csv,summary.txt,out/...}; exit 1 if a check fails.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
export STAMPEDE_BIN="$BUILD/bin" STAMPEDE_SOURCE="$ROOT"
export DURATION="${DURATION:-1800}" MODELS="${MODELS:-closed open}" RATE="${RATE:-100}"
export USERS="${USERS:-10}" SAMPLE="${SAMPLE:-10}" WARMUP="${WARMUP:-}"
export SOAK_OUT="$BUILD/bench/soak"
mkdir -p "$SOAK_OUT"
exec timeout $((2 * DURATION * $(wc -w <<<"$MODELS") + 300)) /usr/bin/python3 "$HERE/soak.py"
