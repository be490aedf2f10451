#!/bin/bash
# sms.sh's scenario on a Redis Cluster of three masters (AOF everysec each,
# joined with redis-cli --cluster create, free loopback ports), the gateway on
# `store.backend = "redis-cluster"`. Prints goniec-load's line, final
# callbacks/s, and the CPU seconds of the gateway and of the three nodes.
#
# usage: benches/scripts/cluster.sh [COUNT [CONCURRENCY [BATCH]]]
set -u
COUNT=${1:-20000}; CONC=${2:-64}; BATCH=${3:-1}
. "$(dirname "$0")/common.sh"
# A port whose cluster bus port (+10000) is free too.
cport() {
  local p
  while :; do
    p=$(port)
    [ "$p" -le 55535 ] && python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $p + 10000))" 2>/dev/null && { echo "$p"; return; }
  done
}
NODES=(); NPIDS=()
for n in 1 2 3; do
  p=$(cport); mkdir -p "$D/n$p"
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
    --cluster-enabled yes --cluster-config-file nodes.conf --dir "$D/n$p" >> "$D/redis.log" 2>&1 &
  NPIDS+=($!); NODES+=("$p")
done
for p in "${NODES[@]}"; do for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done; done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${NODES[@]}") --cluster-replicas 0 --cluster-yes >/dev/null
for p in "${NODES[@]}"; do
  for _ in $(seq 100); do redis-cli -p "$p" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
done
RPID=${NPIDS[0]}
RECEIPT_DELAY=${RECEIPT_DELAY:-0s} start_smsc_sim
start_sink
{ gateway_head | sed -e 's|^backend = "redis"|backend = "redis-cluster"|' \
    -e "s|^url = .*|nodes = [$(printf '"redis://127.0.0.1:%s",' "${NODES[@]}" | sed 's/,$//')]|"
  echo "callback_url = \"http://127.0.0.1:$CPORT/cb\""
  echo "allow_private_callbacks = true"
  smpp_connector; } > "$D/g.toml"
start_gateway
t0=$(date +%s.%N)
load_sent --channel sms --count "$COUNT" --concurrency "$CONC" --batch "$BATCH"
report_final "$COUNT" "$t0"
nodes=0; for p in "${NPIDS[@]}"; do nodes=$(python3 -c "print(round($nodes + $(cpu "$p"), 2))"); done
echo "cpu seconds: gateway $(cpu "$GPID") redis nodes $nodes smsc-sim $(cpu "$SPID") callback-sink $(cpu "$CB_PID")"
echo "status changes applied (gateway metrics): $(applied_statuses)"
kill "$CB_PID" "${NPIDS[@]:1}"
finish
