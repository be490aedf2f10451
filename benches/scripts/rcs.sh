#!/bin/bash
# The RCS figure: a durable gateway (its own redis-server with AOF everysec on
# free loopback ports) with an RCS connector to `goniec rcs-sim`, whose signed
# DELIVERED (and READ) events come back to the gateway's webhook; goniec-load
# waits until every message is delivered. Needs
# `cargo build --release -p goniec-gateway -p goniec-benches` first.
#
# usage: benches/scripts/rcs.sh [COUNT [CONCURRENCY [BATCH [READ_AFTER]]]]
#   READ_AFTER a duration or `never` (default); AF=true turns anti-fraud on,
#   WC sets workers.concurrency (default 256).
set -u
COUNT=${1:-20000}; CONC=${2:-64}; BATCH=${3:-1}; READ=${4:-never}
. "$(dirname "$0")/common.sh"
start_redis
"$GONIEC" rcs-sim --listen "127.0.0.1:$SPORT" --webhook "http://127.0.0.1:$GPORT/v1/webhooks/rcs" \
   --client-token bench-client-token-0123456789 --agent-id bench-agent --read-after "$READ" --delivered-after 100ms > "$D/sim.log" 2>&1 &
SPID=$!
cp connectors/src/rcs/demo-service-account.json "$D/sa.json"
{ gateway_head; cat <<EOT
[[connectors]]
name = "rbm"
kind = "rcs"
base_url = "http://127.0.0.1:$SPORT"
token_uri = "http://127.0.0.1:$SPORT/token"
agent_id = "bench-agent"
service_account_key = "$D/sa.json"
client_token = "bench-client-token-0123456789"
max_connections = 256
[[routes]]
channel = "rcs"
connector = "rbm"
EOT
} > "$D/g.toml"
start_gateway
load --channel rcs --count "$COUNT" --concurrency "$CONC" --batch "$BATCH"
curl -s "http://127.0.0.1:$SPORT/stats"; echo
curl -s "http://127.0.0.1:$GPORT/metrics" | grep -E "^goniec_rcs_events_total|^goniec_connector_submits_total"
finish
