#!/bin/bash
# What the operator console costs the gateway: its CPU per second on a durable
# rig (Redis with AOF, `goniec smsc-sim`, the same config as sms.sh) over SECS
# seconds with no console open, then with 1 and with 5 live streams
# (GET /v1/admin/stream) open, and the bytes each stream receives per second.
# The per-message part (one timestamp per submit, one histogram sample) is in
# sms.sh's figures; this is the fixed part, which at full load is spread over
# every message.
#
# usage: benches/scripts/console.sh [SECS]   (default 30)
set -u
SECS=${1:-30}
. "$(dirname "$0")/common.sh"
start_redis
start_smsc_sim
{ gateway_head; smpp_connector; } > "$D/g.toml"
start_gateway
sleep 2
measure() { # measure STREAMS
  local n=$1 pids=() c0 c1 r0 r1
  for i in $(seq "$n"); do
    curl -sN -H 'Authorization: Bearer benchadmin' "http://127.0.0.1:$GPORT/v1/admin/stream" > "$D/s$i.sse" &
    pids+=($!)
  done
  sleep 2
  c0=$(cpu "$GPID"); r0=$(cpu "$RPID")
  sleep "$SECS"
  c1=$(cpu "$GPID"); r1=$(cpu "$RPID")
  local bytes=0
  [ "$n" -gt 0 ] && bytes=$(stat -c %s "$D/s1.sse")
  [ "${#pids[@]}" -gt 0 ] && kill "${pids[@]}"
  echo "$n streams: gateway $(python3 -c "print(round(($c1 - $c0) * 1000 / $SECS, 2))") ms CPU/s, redis $(python3 -c "print(round(($r1 - $r0) * 1000 / $SECS, 2))") ms CPU/s$( [ "$n" -gt 0 ] && echo ", $(python3 -c "print(round($bytes / ($SECS + 2) / 1024, 1))") KiB/s per stream")"
}
measure 0
measure 1
measure 5
measure 0
finish
