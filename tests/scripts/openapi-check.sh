#!/usr/bin/env bash
# Checks docs/openapi.json against the standard and a live worker:
# 1. openapi-spec-validator (pinned, from PyPI, in a venv under target/) validates the document;
# 2. a worker (target/debug or target/release, or $HEARSAY_WORKER_BIN) is started on 127.0.0.1
#    with a temporary data directory, and schemathesis (pinned) runs against it, bounded in
#    examples and time: no 5xx (not_a_server_error) and no answer that breaks the document
#    (response_schema_conformance, status_code_conformance, content_type_conformance).
#    The stream (infinite) is left out, and so is the drain (it makes the worker leave). The worker is stopped on exit, whatever happens.
#
#   tests/scripts/openapi-check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SCHEMATHESIS=4.32.5
VALIDATOR=0.9.0
PORT=${HEARSAY_OPENAPI_PORT:-18731}
venv=target/openapi-venv

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS" \
  || ! "$venv/bin/pip" show openapi-spec-validator 2>/dev/null | grep -qx "Version: $VALIDATOR"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS" "openapi-spec-validator==$VALIDATOR"
fi

echo "-- openapi-spec-validator $VALIDATOR"
"$venv/bin/openapi-spec-validator" docs/openapi.json

worker=${HEARSAY_WORKER_BIN:-$PWD/target/debug/worker}
[ -x "$worker" ] || worker="$PWD/target/release/worker"
[ -x "$worker" ] || { echo "no worker binary in target/ (cargo build -p hearsay-worker)" >&2; exit 1; }

data=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

# Room for every job the run submits (its sleeps are cut to 50 ms), so that no submission meets
# a full queue: that answer, 503 no_capacity, is in the document, but schemathesis counts every
# 5xx as a server error.
"$worker" --node-id openapi-check --api "127.0.0.1:$PORT" --gossip "127.0.0.1:$((PORT + 1))" \
  --slots 16 --queue-limit 4096 --drain-timeout 1000 --data-dir "$data/store" \
  >"$data/worker.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/worker.log" >&2; exit 1; }
  sleep 0.1
done

echo "-- schemathesis $SCHEMATHESIS against $worker"
status=0
SCHEMATHESIS_HOOKS=openapi_hooks PYTHONPATH=tests/scripts timeout 300 \
  "$venv/bin/schemathesis" run docs/openapi.json --url "http://127.0.0.1:$PORT" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${HEARSAY_OPENAPI_EXAMPLES:-20}" --request-timeout 15 --seed 1 \
  --exclude-path /v1/cluster/stream --exclude-path /v1/drain --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed ($status); the worker's log:" >&2
  tail -n 40 "$data/worker.log" >&2
fi
exit "$status"
