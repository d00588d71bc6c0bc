#!/usr/bin/env bash
# A three-host Hearsay cluster on this machine, each host a network namespace with its own
# address on one bridge, joined by one DNS name: what docs/operations.md describes for real
# machines, to try without any. Needs root and `ip` (iproute2), and curl for `status`.
#
#   deploy/netns-cluster.sh up [WORKER]   # default WORKER: target/release/worker, else target/debug/worker
#   deploy/netns-cluster.sh status        # each node's view of the cluster
#   deploy/netns-cluster.sh job           # six jobs at once, submitted at host1: where each ran
#   deploy/netns-cluster.sh down          # stops the workers, deletes the namespaces
#
# Layout: namespace hearsay-demo-lan holds the bridge (10.77.0.254/24; the shell's commands
# below run there, as a client on the LAN); hearsay-demo-0..2 are the hosts, 10.77.0.1..3, each
# with an /etc/hosts (`/etc/netns/NAME/hosts`, which `ip netns exec` mounts) where
# hearsay-seeds.demo names all three. Every node: --seeds hearsay-seeds.demo:7946, a cluster key
# and an API token (in /tmp/hearsay-netns-demo), listening on 0.0.0.0 with --advertise-* its
# address. The addresses exist only inside these namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
P=hearsay-demo
LAN=$P-lan
DIR=/tmp/hearsay-netns-demo
N=3
NAME=hearsay-seeds.demo

lan() { ip netns exec "$LAN" "$@"; }
token() { cat "$DIR/api-token"; }

up() {
  local worker="${1:-}"
  if [ -z "$worker" ]; then
    worker=target/release/worker
    [ -x "$worker" ] || worker=target/debug/worker
  fi
  [ -x "$worker" ] || { echo "no worker binary: cargo build --release -p hearsay-worker" >&2; exit 1; }
  worker=$(realpath "$worker")
  if ip netns list | grep -q "^$LAN\b"; then echo "already up (deploy/netns-cluster.sh down first)" >&2; exit 1; fi
  mkdir -p "$DIR"
  "$worker" --generate-key >"$DIR/cluster-keys"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/api-token"
  chmod 600 "$DIR/cluster-keys" "$DIR/api-token"

  ip netns add "$LAN"
  lan ip link set lo up
  lan ip link add br0 type bridge
  lan ip addr add 10.77.0.254/24 dev br0
  lan ip link set br0 up
  for i in $(seq 0 $((N - 1))); do
    local host=$P-$i addr=10.77.0.$((i + 1))
    ip netns add "$host"
    ip -n "$host" link set lo up
    ip link add "host$i" netns "$LAN" type veth peer name eth0 netns "$host"
    lan ip link set "host$i" master br0 up
    ip -n "$host" addr add "$addr/24" dev eth0
    ip -n "$host" link set eth0 up
    mkdir -p "/etc/netns/$host"
    {
      echo "127.0.0.1 localhost"
      for k in $(seq 1 $N); do echo "10.77.0.$k $NAME"; done
    } >"/etc/netns/$host/hosts"
    ip netns exec "$host" env \
      HEARSAY_NODE_ID="host$i" \
      HEARSAY_API=0.0.0.0:8080 HEARSAY_GOSSIP=0.0.0.0:7946 \
      HEARSAY_ADVERTISE_API="$addr:8080" HEARSAY_ADVERTISE_GOSSIP="$addr:7946" \
      HEARSAY_SEEDS="$NAME:7946" \
      HEARSAY_CLUSTER_KEY_FILE="$DIR/cluster-keys" HEARSAY_API_TOKEN_FILE="$DIR/api-token" \
      HEARSAY_SLOTS=2 \
      "$worker" >"$DIR/host$i.log" 2>&1 &
    echo $! >"$DIR/host$i.pid"
    echo "host$i: $addr, log $DIR/host$i.log"
  done
  # Bounded wait until host0 sees all three alive.
  for _ in $(seq 1 100); do
    if [ "$(alive 1)" = "$N" ]; then
      echo "joined by $NAME: every host alive to host0"
      return 0
    fi
    sleep 0.1
  done
  echo "not joined within 10 s; see $DIR/host*.log" >&2
  exit 1
}

# How many nodes host$1's view has alive (0 if it does not answer).
alive() {
  lan curl -fsS --max-time 2 -H "Authorization: Bearer $(token)" "http://10.77.0.$1:8080/v1/cluster" 2>/dev/null |
    grep -o '"state":"alive","load"' | wc -l || echo 0
}

status() {
  for i in $(seq 0 $((N - 1))); do
    echo "host$i sees $(alive $((i + 1))) of $N alive"
  done
  echo "a view in full:"
  echo "  ip netns exec $LAN curl -H \"Authorization: Bearer \$(cat $DIR/api-token)\" http://10.77.0.1:8080/v1/cluster"
}

# Six 500 ms jobs at once, all submitted at host1: where each ran.
job() {
  for k in $(seq 1 6); do
    lan curl -fsS --max-time 10 -H "Authorization: Bearer $(token)" \
      -H 'Content-Type: application/json' -d '{"kind":"sleep","ms":500}' \
      "http://10.77.0.2:8080/v1/jobs?wait=true" | grep -o '"executing_node":"[^"]*"' &
  done
  wait
}

down() {
  for i in $(seq 0 $((N - 1))); do
    if [ -f "$DIR/host$i.pid" ]; then
      kill "$(cat "$DIR/host$i.pid")" 2>/dev/null || true
    fi
  done
  # SIGTERM drains (nothing is running here): give them a moment, bounded, then delete.
  for i in $(seq 0 $((N - 1))); do
    local pid
    pid=$(cat "$DIR/host$i.pid" 2>/dev/null || true)
    for _ in $(seq 1 50); do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    ip netns del "$P-$i" 2>/dev/null || true
    rm -rf "/etc/netns/$P-$i"
  done
  rmdir /etc/netns 2>/dev/null || true
  ip netns del "$LAN" 2>/dev/null || true
  rm -f "$DIR"/*.pid "$DIR/cluster-keys" "$DIR/api-token"
  echo "down (logs kept in $DIR)"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  status) status ;;
  job) job ;;
  down) down ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
