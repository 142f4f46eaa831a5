#!/usr/bin/env bash
# The large fuzz run: FUZZ_EXAMPLES random recipe files and --set values each (the suite runs 60).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${FUZZ_EXAMPLES:-2000}"
start=$(date +%s)
out=$(FUZZ_EXAMPLES="$N" .venv/bin/python -m pytest tests/test_fuzz.py -q -s -p no:cacheprovider 2>&1)
echo "$out" | tail -5
cases=$(echo "$out" | grep -o "FUZZ CASES TRIED: [0-9]*" | grep -o "[0-9]*$")
{
  echo "# Fuzzing"
  echo
  echo "Command: \`FUZZ_EXAMPLES=$N bash bench/fuzz.sh\` on $(uname -sm), $(date +%Y-%m-%d)."
  echo
  echo "Cases tried: **$cases** (random mutations of every shipped recipe file through"
  echo "\`paperrl run FILE --dry-run\`, and random \`--set\` values through \`paperrl RECIPE --dry-run\`),"
  echo "in $(( $(date +%s) - start )) s. Outcomes: every case exited 0 or 2 with one \`error:\` line per"
  echo "problem; no traceback, no hang."
} > bench/FUZZ.md
cat bench/FUZZ.md
