#!/bin/bash
# Issue 13's fairness scenario: tenant A ("bench") fills the queue with COUNT
# messages through the batch endpoint while the SMPP connector drains them at
# TPS (default 2000/s), so A's backlog grows to most of COUNT; once it is
# BACKLOG deep (default half of COUNT), tenant B ("small") sends one message a
# second, NB of them (default 30). Prints, for B's messages, the time from
# `queued` to `submitted` (p50, p99, max, from each message's events) and A's
# backlog (entries in A's streams) when each was sent. Durable Redis as in
# sms.sh. Needs `cargo build --release -p goniec-gateway -p goniec-benches`.
#
# usage: benches/scripts/fairness.sh [COUNT [NB]]
set -u
COUNT=${1:-200000}; NB=${2:-30}
. "$(dirname "$0")/common.sh"
start_redis
start_smsc_sim
SMALL_HASH=$(echo smallkey | "$GONIEC" hash-key)
{ gateway_head
  cat <<EOT
[[tenants]]
name = "small"
api_keys = ["$SMALL_HASH"]
webhook_secret = "small-webhook-secret-0123456789"
policy = "transactional"
EOT
  TPS=${TPS:-2000/s} smpp_connector; } > "$D/g.toml"
start_gateway
# Entries in A's streams (the default prefix and 16 partitions), in one round
# trip: a SCAN over every message record would take seconds.
backlog() {
  for p in $(seq 0 15); do echo "XLEN goniec:{p$p}:q:sms:bench"; done |
    redis-cli -p "$RPORT" | awk '{s += $1} END {print s + 0}'
}
"$LOAD" --url "http://127.0.0.1:$GPORT" --api-key benchkey --count "$COUNT" \
  --batch 500 --concurrency 2 --duration-limit 300s > "$D/a.json" 2> "$D/a.err" &
APID=$!
want=${BACKLOG:-$((COUNT / 2))}
t0=$(date +%s)
for _ in $(seq 600); do [ "$(backlog)" -ge "$want" ] && break; sleep 0.5; done
echo "A's backlog when B starts ($(( $(date +%s) - t0 )) s after A started): $(backlog) entries"
: > "$D/b.txt"
for i in $(seq "$NB"); do
  to=$(printf '+48601%06d' $((900000 + i)))
  id=$(curl -s -H 'Authorization: Bearer smallkey' -H 'content-type: application/json' \
    -d "{\"channel\":\"sms\",\"to\":\"$to\",\"text\":\"B $i\"}" \
    "http://127.0.0.1:$GPORT/v1/messages" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  echo "$id $(backlog) $(date +%s.%N)" >> "$D/b.txt"
  sleep 1
done
sleep 2
python3 - "$GPORT" "$D/b.txt" <<'PY'
import json, sys, urllib.request
from datetime import datetime
port, path = sys.argv[1], sys.argv[2]
lat, backlogs, missing = [], [], 0
def at(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for line in open(path):
    mid, backlog, sent = line.split()
    backlogs.append(int(backlog))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages/{mid}",
                                 headers={"Authorization": "Bearer smallkey"})
    ev = {e["status"]: at(e["at"]) for e in json.load(urllib.request.urlopen(req))["events"]}
    if "queued" in ev and "submitted" in ev:
        lat.append((ev["submitted"] - ev["queued"]) * 1000)
    else:
        missing += 1
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print(f"B: {len(lat)} submitted, {missing} not submitted; queued -> submitted ms: "
      f"p50 {q(0.5):.0f}, p99 {q(0.99):.0f}, max {max(lat) if lat else float('nan'):.0f}")
print(f"A's backlog while B sent: min {min(backlogs)}, max {max(backlogs)} entries")
if __import__("os").environ.get("VERBOSE"):
    for line in open(path): print("   sent:", line.strip())
PY
echo "peak RSS MiB: gateway $(rss "$GPID") redis $(rss "$RPID")"
kill "$APID" 2>/dev/null; wait "$APID" 2>/dev/null
finish
