#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), with the dictionary
# and the memory limits of README.md. Exits 0 with "skipped: ..." where
# nightly or cargo-fuzz is missing (they cannot be fetched on every machine).
#
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "skipped: no nightly/cargo-fuzz (needs a nightly toolchain and 'cargo install cargo-fuzz')"
  exit 0
fi
targets=$(cargo +nightly fuzz list)
status=0
for t in $targets; do
  echo "== fuzz $t for ${secs}s"
  mkdir -p "fuzz/corpus/$t"
  if ! cargo +nightly fuzz run -O -a "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -runs=10000000 \
      -dict=fuzz/sluice.dict -max_len=4096 \
      -malloc_limit_mb=64 -rss_limit_mb=1024 \
      -print_final_stats=1; then
    echo "!! $t failed: reproducer in fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
