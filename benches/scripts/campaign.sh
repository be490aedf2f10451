#!/bin/bash
# Campaign figures (issue 15), on a durable rig (redis-server with AOF
# everysec, SMPP to `goniec smsc-sim` with receipts at once):
#  1. CSV ingest: ROWS rows (default 1,000,000; `;`-separated, one tracked link
#     per row's template) streamed to PUT /v1/campaigns/{id}/audience: rows/s,
#     and the gateway's and Redis's peak RSS before and after.
#  2. That campaign sent for SECONDS (default 30): messages accepted and
#     delivered per second, from its report; then the plain batch API on the
#     same rig: goniec-load, SEND messages (default 50,000) in batches of 500.
#  3. GET /v1/reports/campaigns/{id} on the ROWS-recipient campaign: 20 calls,
#     min/median/max ms.
#  4. GET /l/{code}: goniec-clicks on the codes the campaign made, 3 runs of 10 s
#     at concurrency 64: redirects/s and p99.
# Needs `cargo build --release -p goniec-gateway -p goniec-benches` first.
#
# usage: benches/scripts/campaign.sh [ROWS [SECONDS [SEND]]]
set -u
ROWS=${1:-1000000}; SECS=${2:-30}; SEND=${3:-50000}
. "$(dirname "$0")/common.sh"
CLICKS=$D/bin/goniec-clicks
cp "$BIN/goniec-clicks" "$CLICKS" || exit 2
start_redis
RECEIPT_DELAY=0s start_smsc_sim
{ gateway_head
  printf '[tenants.links]\ndomain = "http://127.0.0.1:%s/l"\n' "$GPORT"
  smpp_connector; } > "$D/g.toml"
start_gateway
API="http://127.0.0.1:$GPORT"
api() { curl -s -H 'Authorization: Bearer benchkey' -H 'Content-Type: application/json' "$@"; }
api -X POST "$API/v1/templates" -d '{"id":"r","channel":"sms",
  "text":"Zaleglosc {{amount}} zl, termin {{due}}. Zaplac: {{link:https://pay.example.com/{{inv}}}}",
  "vars":{"amount":{"format":"amount"},"due":{"format":"date"},"inv":{}}}' > /dev/null
python3 - "$D/a.csv" "$ROWS" <<'PY'
import sys
n = int(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("to;client_ref;amount;due;inv\n")
    for i in range(n):
        f.write(f"+48{600000000 + i};c{i};{i % 1000}.{i % 100:02d};2026-12-{1 + i % 28:02d};FV/{i}\n")
PY
ID=$(api -X POST "$API/v1/campaigns" -d '{"name":"bench","steps":[{"channel":"sms","template_id":"r"}]}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "csv: $ROWS rows, $(du -m "$D/a.csv" | cut -f1) MiB"
echo "peak RSS MiB before ingest: gateway $(rss "$GPID") redis $(rss "$RPID")"
t0=$(date +%s.%N)
curl -s -X PUT -H 'Authorization: Bearer benchkey' -H 'Content-Type: text/csv' \
  -T "$D/a.csv" "$API/v1/campaigns/$ID/audience" > "$D/up.json"
t1=$(date +%s.%N)
echo "ingest: $(cat "$D/up.json")"
echo "ingest rows/s: $(python3 -c "print(round($ROWS / ($t1 - $t0)))") ($(python3 -c "print(round($t1 - $t0, 1))") s)"
echo "peak RSS MiB after ingest: gateway $(rss "$GPID") redis $(rss "$RPID")"
echo "gateway cpu seconds so far: $(cpu "$GPID")"

# 2. The campaign, then the batch API.
report() { api "$API/v1/reports/campaigns/$ID" | python3 -c '
import json, sys; t = json.load(sys.stdin)["report"]["total"]; print(t["accepted"], t["delivered"])'; }
c0=$(cpu "$GPID"); r0=$(cpu "$RPID")
api -X POST "$API/v1/campaigns/$ID/start" > /dev/null
t0=$(date +%s.%N)
sleep "$SECS"
read -r acc del < <(report)
t1=$(date +%s.%N)
echo "campaign: $acc accepted, $del delivered in $(python3 -c "print(round($t1 - $t0, 1))") s:" \
  "$(python3 -c "print(round($acc / ($t1 - $t0)))") accepted/s, $(python3 -c "print(round($del / ($t1 - $t0)))") delivered/s;" \
  "cpu ms/msg gateway $(python3 -c "print(round(($(cpu "$GPID") - $c0) * 1000 / max($acc, 1), 3))") redis $(python3 -c "print(round(($(cpu "$RPID") - $r0) * 1000 / max($acc, 1), 3))")"

# 3. Report latency on the big campaign, with its counters filled.
for _ in $(seq 20); do
  curl -s -o /dev/null -w '%{time_total}\n' -H 'Authorization: Bearer benchkey' "$API/v1/reports/campaigns/$ID"
done | sort -n | awk '{a[NR] = $1 * 1000} END {printf "report latency ms (%d-recipient campaign, 20 calls): min %.1f median %.1f max %.1f\n", '"$ROWS"', a[1], a[int((NR + 1) / 2)], a[NR]}'
api -X POST "$API/v1/campaigns/$ID/pause" > /dev/null
sleep 2
c0=$(cpu "$GPID"); r0=$(cpu "$RPID")
echo "batch API, $SEND messages in batches of 500 (final = delivered):"
load --channel sms --count "$SEND" --concurrency 4 --batch 500
echo "  cpu ms/msg gateway $(python3 -c "print(round(($(cpu "$GPID") - $c0) * 1000 / $SEND, 3))") redis $(python3 -c "print(round(($(cpu "$RPID") - $r0) * 1000 / $SEND, 3))")"

# 4. Redirects.
redis-cli -p "$RPORT" --scan --pattern '*:l:*' | head -n 200000 | sed 's/.*:l://' > "$D/codes"
echo "codes: $(wc -l < "$D/codes")"
for _ in 1 2 3; do
  c0=$(cpu "$GPID")
  out=$("$CLICKS" --url "$API" --codes "$D/codes" --concurrency 64 --seconds 10)
  echo "redirects: $out gateway cpu $(python3 -c "print(round($(cpu "$GPID") - $c0, 2))") s"
done
echo "peak RSS MiB at the end: gateway $(rss "$GPID") redis $(rss "$RPID")"
finish
