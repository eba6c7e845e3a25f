#!/usr/bin/env bash
# Sustained ingest over HTTP: wrk drives many concurrent clients against `suqiu serve` (release build), on SQLite
# and on PostgreSQL. Next to it, in the same run, the baseline: `GET /healthz` (HTTP plus one database round
# trip) under the same load, so the ratio says what storing, classifying and ticketing cost.
#
# Usage: scripts/bench-ingest.sh [sqlite|postgres|both] [SECONDS] [CONNECTIONS]   (default: both 20 128)
# PostgreSQL: SUQIU_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres); the script creates
# and drops a database of its own. Needs wrk and python3; installs wrk when run as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
backends=${1:-both}
seconds=${2:-20}
connections=${3:-128}
bin="${CARGO_TARGET_DIR:-target}/release/suqiu"
admin_url=${SUQIU_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

install_if_missing /usr/bin/wrk wrk

echo "building $bin" >&2
cargo build --release -q

work=$(mktemp -d)
server=
pg_db=
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [[ -n $pg_db ]] && psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# The texts, one JSON string literal a line, for the wrk script.
python3 - "$work/texts" tests/corpus/*.jsonl <<'PY'
import json, sys
out, files = sys.argv[1], sys.argv[2:]
with open(out, "w", encoding="utf-8") as w:
    for f in files:
        for line in open(f, encoding="utf-8"):
            if line.strip():
                w.write(json.dumps(json.loads(line)["text"], ensure_ascii=False) + "\n")
PY

# Messages stored, read straight from the database.
stored_messages() {
  case $1 in
    sqlite://*) python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM messages").fetchone()[0])' "${1#sqlite://}" ;;
    *) psql -qtA "$1" -c 'SELECT COUNT(*) FROM messages' ;;
  esac
}

# One backend: start the server, load it, read the figures, stop it.
bench() {
  local name=$1 url=$2
  export SUQIU_DATABASE_URL=$url SUQIU_LISTEN=127.0.0.1:0
  local key
  key=$("$bin" ingest-key add bench 2>/dev/null | grep -o 'sqk_[0-9a-f]*')
  "$bin" serve 2>"$work/serve.log" &
  server=$!
  local base=
  for _ in $(seq 100); do
    base=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1 || true)
    [[ -n $base ]] && break
    sleep 0.1
  done
  [[ -n $base ]] || { cat "$work/serve.log" >&2; exit 1; }

  local health ingest
  health=$(wrk -t1 -c"$connections" -d"$((seconds / 2))s" "$base/healthz" | awk '/Requests\/sec/ {print $2}')
  ingest=$(SUQIU_BENCH_TEXTS="$work/texts" SUQIU_BENCH_KEY=$key \
    wrk -t1 -c"$connections" -d"${seconds}s" --latency -s scripts/bench-ingest.lua "$base" | grep '^RESULT')
  kill "$server"; wait "$server" 2>/dev/null || true; server=

  local requests non2xx errors duration_s p50_ms p99_ms max_ms
  eval "$(echo "$ingest" | sed 's/^RESULT //' | tr ' ' '\n' | sed 's/^/local /')"
  local stored
  stored=$(stored_messages "$url")
  awk -v name="$name" -v n="$requests" -v s="$duration_s" -v p50="$p50_ms" -v p99="$p99_ms" -v max="$max_ms" \
      -v bad="$non2xx" -v err="$errors" -v stored="$stored" -v health="$health" 'BEGIN {
    rate = n / s
    printf "%-9s ingest %6.0f msg/s  p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  | %d answered, %d non-2xx, %d socket errors, %d stored | baseline GET /healthz %6.0f req/s, ingest/baseline %.2f\n",
      name, rate, p50, p99, max, n, bad, err, stored, health, rate / health
  }'
}

case $backends in
  sqlite|both) bench sqlite "sqlite://$work/data/suqiu.db" ;;
esac
case $backends in
  postgres|both)
    pg_db="suqiu_bench_$$"
    psql -q "$admin_url" -c "CREATE DATABASE $pg_db" >/dev/null
    bench postgres "${admin_url%/*}/$pg_db"
    ;;
esac
