#!/usr/bin/env bash
# Smoke-tests a built worker image without starting a container (crun is refused setrlimit on
# the machines this project is built on): exports the root filesystem of a created container,
# then runs the image's entrypoint in it by chroot, as the image's user and with the image's
# environment, with a fresh /proc in a mount namespace of its own. Checks `--version`, then
# starts a node on loopback and waits (bounded) for `GET /healthz` to answer `ok`.
#
#   deploy/smoke-image.sh IMAGE
#
# Needs root, podman, unshare, chroot, curl. Everything it makes is removed on exit, and every
# process it starts in the image is stopped.
set -euo pipefail
image="${1:?usage: deploy/smoke-image.sh IMAGE}"
work=$(mktemp -d /tmp/hearsay-image-smoke.XXXXXX)
cid=""
pid=""
# Every process whose root is the exported filesystem: the node (a grandchild of "$pid", which
# killing "$pid" alone would leave running).
in_root() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$work" ] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  mapfile -t left < <(in_root)
  if [ ${#left[@]} -gt 0 ]; then
    kill "${left[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -z "$(in_root)" ] && break; sleep 0.1; done
    mapfile -t left < <(in_root)
    if [ ${#left[@]} -gt 0 ]; then kill -9 "${left[@]}" 2>/dev/null || true; fi
  fi
  if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
  if [ -n "$cid" ]; then podman rm -f "$cid" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cid=$(podman create "$image")
podman export "$cid" | tar -x -C "$work" -f -
mkdir -p "$work/proc"
# mktemp's 0700 would keep the image's user out of its own root.
chmod 755 "$work"
entrypoint=$(podman image inspect --format '{{index .Config.Entrypoint 0}}' "$image")
user=$(podman image inspect --format '{{.Config.User}}' "$image")
mapfile -t envs < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep .)
case "$user" in 0 | 0:* | root | root:* | "") echo "smoke: the image runs as root ($user)" >&2; exit 1 ;; esac

chroot=$(command -v chroot)
# As the image runs it: its user, its environment only (and the `VAR=value` arguments), a /proc
# of its own.
in_image() {
  unshare --mount --propagation private -- sh -c \
    'mount -t proc proc "$0/proc" && exec env -i "$@"' \
    "$work" "${envs[@]}" "$@" "$chroot" --userspec="$user" "$work" "$entrypoint"
}

version=$(env -i "${envs[@]}" "$chroot" --userspec="$user" "$work" "$entrypoint" --version)
echo "smoke: $image: $version (entrypoint $entrypoint, user $user)"
case "$version" in worker\ *) ;; *) echo "smoke: unexpected --version: $version" >&2; exit 1 ;; esac

# A node on loopback ports of its own; the image's 0.0.0.0 defaults are overridden only here.
api=127.0.0.1:18999
gossip=127.0.0.1:17999
in_image HEARSAY_API=$api HEARSAY_GOSSIP=$gossip >"$work/node.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if body=$(curl -fsS --max-time 1 "http://$api/healthz" 2>/dev/null); then
    echo "smoke: GET /healthz: $body"
    case "$body" in *'"status":"ok"'*) exit 0 ;; esac
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "smoke: the node exited; its log:" >&2; cat "$work/node.log" >&2; exit 1
  fi
  sleep 0.1
done
echo "smoke: no /healthz answer within 10 s; the node's log:" >&2
cat "$work/node.log" >&2
exit 1
