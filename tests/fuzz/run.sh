#!/usr/bin/env bash
# Runs each libFuzzer target of a STAMPEDE_FUZZ build for a while: `make fuzz` (20 s each).
#   tests/fuzz/run.sh BIN_DIR [SECONDS_PER_TARGET] [TARGET...]
# First every saved reproducer (tests/fuzz/regressions/<target>/) is replayed; then each target
# fuzzes from its seed corpus (tests/fuzz/corpus/<target>/, read only) with what it finds kept
# in BIN_DIR/corpus/<target>/. A crash leaves crash-*/leak-*/timeout-*/oom-* files in
# BIN_DIR/artifacts/<target>/ and makes this script exit 1 after the remaining targets ran.
# To minimise one: BIN_DIR/<target>_fuzz -minimize_crash=1 -runs=100000 FILE
set -uo pipefail

bin_dir=${1:?usage: run.sh BIN_DIR [SECONDS_PER_TARGET] [TARGET...]}
seconds=${2:-20}
shift $(($# < 2 ? $# : 2))
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(scenario http1 envelope stats hosts template)
here=$(cd "$(dirname "$0")" && pwd)

# Every target: at most 4 KiB inputs (a scenario or a response head, not a download), 2 GB of
# memory, 10 s per input; leak checks on.
common_flags=(-max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
failed=()
for target in "${targets[@]}"; do
  fuzzer="$bin_dir/${target}_fuzz"
  [[ -x "$fuzzer" ]] || { echo "run.sh: $fuzzer not built" >&2; exit 2; }
  artifacts="$bin_dir/artifacts/$target/"
  corpus="$bin_dir/corpus/$target"
  mkdir -p "$artifacts" "$corpus"
  regressions=("$here/regressions/$target"/*)
  if [[ -e "${regressions[0]}" ]]; then
    echo "== $target: replaying ${#regressions[@]} saved reproducers"
    if ! "$fuzzer" "${common_flags[@]}" "${regressions[@]}" >"$bin_dir/$target.replay.log" 2>&1; then
      echo "== $target: a saved reproducer fails again, see $bin_dir/$target.replay.log"
      failed+=("$target(regression)")
    fi
  fi
  echo "== $target: fuzzing for ${seconds}s"
  if "$fuzzer" "${common_flags[@]}" -max_total_time="$seconds" -artifact_prefix="$artifacts" \
    "$corpus" "$here/corpus/$target" >"$bin_dir/$target.fuzz.log" 2>&1; then
    grep -E '^stat::number_of_executed_units' "$bin_dir/$target.fuzz.log" | sed "s/^/   /"
  else
    echo "== $target: CRASH, see $bin_dir/$target.fuzz.log and $artifacts"
    grep -E '^==[0-9]+==ERROR|^SUMMARY|deadly signal' "$bin_dir/$target.fuzz.log" | head -3 | sed "s/^/   /"
    failed+=("$target")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: failures in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${targets[*]}: no crash"
