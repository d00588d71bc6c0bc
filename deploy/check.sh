#!/usr/bin/env bash
# Checks what is under deploy/, as CI does (.ci/run):
# 1. the Kubernetes manifests against the Kubernetes 1.34 API schema, strictly (kubernetes-validate
#    from PyPI, pinned, in a virtual environment under target/);
# 2. the systemd unit with `systemd-analyze verify` (any message fails: verify warns and exits 0
#    on unknown or bad settings) and its hardening with `systemd-analyze security`, which must
#    stay at an exposure of 2.0 or less (out of 10);
# 3. with --image: builds the container image from the debug build in target/ (which the tests
#    made) and smoke-tests it (deploy/smoke-image.sh), then removes it.
#
#   deploy/check.sh [--image]
set -euo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VALIDATE=1.34.1
SCHEMA=1.34.0

echo "-- Kubernetes manifests (schema $SCHEMA)"
venv=target/deploy-venv
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$KUBERNETES_VALIDATE"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE"
fi
"$venv/bin/kubernetes-validate" --strict --quiet -k "$SCHEMA" deploy/kubernetes/*.yaml
echo "ok: $(ls deploy/kubernetes/*.yaml | tr '\n' ' ')"

echo "-- systemd unit"
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
# verify wants ExecStart's program to exist: point it at the built binary, change nothing else.
worker="$PWD/target/debug/worker"
[ -x "$worker" ] || worker="$PWD/target/release/worker"
[ -x "$worker" ] || { echo "no worker binary in target/ (cargo build -p hearsay-worker)" >&2; exit 1; }
sed "s|^ExecStart=/usr/local/bin/worker|ExecStart=$worker|" deploy/systemd/hearsay-worker.service \
  >"$unit_dir/hearsay-worker.service"
messages=$(systemd-analyze verify "$unit_dir/hearsay-worker.service" 2>&1) || {
  echo "$messages" >&2; exit 1; }
if [ -n "$messages" ]; then
  echo "systemd-analyze verify: $messages" >&2
  exit 1
fi
systemd-analyze security --offline=yes --threshold=20 "$unit_dir/hearsay-worker.service" \
  | tail -n 1

if [ "${1:-}" = "--image" ]; then
  echo "-- container image"
  image=$(deploy/build-image.sh --profile debug --no-build --tag localhost/hearsay-worker:ci | tail -n 1)
  echo "$image: $(podman image inspect --format '{{.Size}}' "$image") bytes"
  status=0
  deploy/smoke-image.sh "$image" || status=$?
  podman rmi -f "$image" >/dev/null
  exit "$status"
fi
