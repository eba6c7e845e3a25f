#!/usr/bin/env bash
# Batch throughput, peak memory and start-up time of the release binary, each next to a same-run baseline.
#
# Usage: scripts/bench-batch.sh [MESSAGES]    (default 100000; honours CARGO_TARGET_DIR, default target/)
# Needs python3 and GNU time (/usr/bin/time, package `time`), which it installs when run as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
messages=${1:-100000}
bin="${CARGO_TARGET_DIR:-target}/release/suqiu"
runs=20

if ! command -v python3 >/dev/null; then
  echo "python3 is needed to generate the input and time start-up" >&2
  exit 1
fi
# GNU time measures peak memory.
install_if_missing /usr/bin/time time

echo "building $bin" >&2
cargo build --release -q

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The input: the corpus texts, cycled, as JSON objects with an id.
python3 - "$messages" "$work/input.jsonl" tests/corpus/*.jsonl <<'PY'
import itertools, json, sys
count, out, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
texts = [json.loads(l)["text"] for f in files for l in open(f, encoding="utf-8") if l.strip()]
with open(out, "w", encoding="utf-8") as w:
    for i, text in zip(range(count), itertools.cycle(texts)):
        w.write(json.dumps({"id": i + 1, "text": text}, ensure_ascii=False) + "\n")
PY
echo "classifying $messages messages from $(ls tests/corpus/*.jsonl | wc -l) corpus files" >&2

start=$(date +%s%N)
/usr/bin/time -v -o "$work/time.txt" "$bin" classify --stdin <"$work/input.jsonl" >"$work/output.jsonl"
end=$(date +%s%N)
wall_ms=$(( (end - start) / 1000000 ))
lines=$(wc -l <"$work/output.jsonl")
errors=$(grep -c '"error"' "$work/output.jsonl" || true)
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
if [[ $lines -ne $messages ]]; then
  echo "error: $lines output lines for $messages input lines" >&2
  exit 1
fi

# Start-up: the median wall time of one short classification with the trained model read from the cache (the
# batch above left it there), of the same with the cache turned off (the model trained at every start), and of
# `--version` (process start, no rules).
read -r classify_ms cold_ms version_ms < <(python3 - "$bin" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
bin, runs = sys.argv[1], int(sys.argv[2])
def median_ms(args, env=None):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([bin, *args], stdout=subprocess.DEVNULL, check=True, env=env)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
no_cache = dict(os.environ, SUQIU_CACHE_DIR="")
print(f"{median_ms(['classify', '你好', '--json']):.1f} {median_ms(['classify', '你好', '--json'], no_cache):.1f} "
      f"{median_ms(['--version']):.1f}")
PY
)

awk -v n="$messages" -v ms="$wall_ms" -v kb="$rss_kb" -v lines="$lines" -v errors="$errors" \
    -v cms="$classify_ms" -v ums="$cold_ms" -v vms="$version_ms" -v runs="$runs" -v cores="$(nproc)" 'BEGIN {
  printf "%-42s %14s\n", "measure", "value"
  printf "%-42s %14d\n", "messages (output lines)", lines
  printf "%-42s %14d\n", "error lines", errors
  printf "%-42s %14.2f\n", "batch wall time (s)", ms / 1000
  printf "%-42s %14.0f\n", "throughput (messages/s, " cores " cores)", n / (ms / 1000)
  printf "%-42s %14.1f\n", "peak RSS (MB)", kb / 1024
  printf "%-42s %14.1f\n", "start-up, classify --json (ms, median of " runs ")", cms
  printf "%-42s %14.1f\n", "  the same, model cache off (ms)", ums
  printf "%-42s %14.1f\n", "baseline, --version (ms, median of " runs ")", vms
}'
