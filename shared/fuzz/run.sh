#!/usr/bin/env bash
# Runs each fuzz target of hearsay-shared for a set time (default 600 s) with the nightly
# toolchain, and prints libFuzzer's final statistics line of each. Findings (crashes) are
# written under shared/fuzz/artifacts/<target>/; the corpus grows under shared/fuzz/corpus/.
#   shared/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(datagram job_json sealed)
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
failed=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target for ${seconds}s"
  set +e
  cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"artifacts/$target.log" 2>&1
  status=$?
  set -e
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done [0-9]+ runs|SUMMARY" \
    "artifacts/$target.log" || true
  echo "   corpus: $(ls "corpus/$target" | wc -l) inputs; log: shared/fuzz/artifacts/$target.log"
  if [ "$status" -ne 0 ]; then
    echo "   FINDING: $target exited with $status; the input is under shared/fuzz/artifacts/$target/"
    failed=1
  fi
done
exit "$failed"
