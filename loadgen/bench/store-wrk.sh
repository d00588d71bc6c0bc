#!/usr/bin/env bash
# What the job store costs: submissions per second and p99 latency of `echo` jobs with
# `?wait=true`, against a worker keeping its jobs on disk (--data-dir) and the same worker
# keeping them in memory only (--data-dir none), one wrk run each, at 10 and 100 connections,
# interleaved so that both see the same machine. Prints a table with the ratios.
#
#   cargo build --release -p hearsay-worker && loadgen/bench/store-wrk.sh
#
# Environment: WORKER (default target/release/worker), DURATION (wrk's -d, default 10s),
# SLOTS (default 2), STORE_DIR (where the store worker's data directory is made, default a
# fresh temporary directory; e.g. /dev/shm, a tmpfs where fsync costs nothing, to tell the
# database's own work from the disk's). Needs wrk. Loopback only; both workers are stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${WORKER:-target/release/worker}
duration=${DURATION:-10s}
slots=${SLOTS:-2}
command -v wrk >/dev/null || { echo "store-wrk.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$bin" ] || { echo "store-wrk.sh: no $bin (cargo build --release -p hearsay-worker)" >&2; exit 1; }

work=$(mktemp -d)
store=$(mktemp -d "${STORE_DIR:-${TMPDIR:-/tmp}}/store-wrk.XXXXXX")
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work" "$store"; }
trap cleanup EXIT

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"kind":"echo","data":"hello"}'
wrk.headers["Content-Type"] = "application/json"
LUA

start() { # name ip data-dir
  "$bin" --node-id "$1" --api "$2:18555" --gossip "$2:17555" --slots "$slots" \
    --data-dir "$3" --log-format json >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS --max-time 1 "http://$2:18555/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "store-wrk.sh: $1 did not start; its log:" >&2; cat "$work/$1.log" >&2; exit 1
}
start memory 127.0.0.201 none
start store 127.0.0.202 "$store"

run() { # ip connections -> "req/s p99_ms non2xx"
  local out
  out=$(wrk -t2 -c"$2" -d"$duration" --latency -s "$work/post.lua" "http://$1:18555/v1/jobs?wait=true")
  local rps p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$rps $p99 ${bad:-0}"
}

printf '%-11s | %14s | %14s | %11s | %12s | %12s | %9s\n' connections "memory req/s" "store req/s" "store/memory" "memory p99" "store p99" "p99 ratio"
for c in 10 100; do
  read -r m_rps m_p99 m_bad < <(run 127.0.0.201 "$c")
  read -r s_rps s_p99 s_bad < <(run 127.0.0.202 "$c")
  [ "$m_bad" = 0 ] && [ "$s_bad" = 0 ] || echo "note: non-2xx answers: memory $m_bad, store $s_bad" >&2
  awk -v c="$c" -v mr="$m_rps" -v sr="$s_rps" -v mp="$m_p99" -v sp="$s_p99" 'BEGIN {
    printf "%-11s | %14.0f | %14.0f | %10.2f× | %9.2f ms | %9.2f ms | %8.2f×\n", c, mr, sr, sr/mr, mp, sp, sp/mp }'
done
