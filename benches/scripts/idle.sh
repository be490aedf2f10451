#!/bin/bash
# Latency on an idle gateway: single SMS, one every 200 ms, on a fresh durable
# rig (Redis with AOF, `goniec smsc-sim`); for each, queued -> submitted from
# its event history (ms), the first message after the start included. Prints
# each wait, then p50 and max.
#
# usage: benches/scripts/idle.sh [COUNT]   (default 25)
set -u
COUNT=${1:-25}
. "$(dirname "$0")/common.sh"
start_redis
RECEIPT_DELAY=${RECEIPT_DELAY:-10ms} start_smsc_sim
{ gateway_head; smpp_connector; } > "$D/g.toml"
start_gateway
waits=()
for i in $(seq "$COUNT"); do
  id=$(curl -s -H 'authorization: Bearer benchkey' -H 'content-type: application/json' \
    -d "{\"channel\":\"sms\",\"to\":\"+4850$(printf '%07d' "$i")\",\"text\":\"idle $i\"}" \
    "http://127.0.0.1:$GPORT/v1/messages" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  sleep 0.2
  w=$(curl -s -H 'authorization: Bearer benchkey' "http://127.0.0.1:$GPORT/v1/messages/$id" | python3 -c '
import json, sys, datetime
m = json.load(sys.stdin)
at = {e["status"]: datetime.datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in m["events"]}
print(round((at["submitted"] - at["queued"]).total_seconds() * 1000, 1) if "submitted" in at else "none")')
  waits+=("$w")
done
echo "queued -> submitted (ms), in order: ${waits[*]}"
printf '%s\n' "${waits[@]}" | python3 -c '
import sys, statistics
v = [float(x) for x in sys.stdin.read().split() if x != "none"]
print(f"p50 {statistics.median(v):.1f} ms, max {max(v):.1f} ms, first {v[0]:.1f} ms ({len(v)} messages)")'
finish
