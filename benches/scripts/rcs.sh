#!/bin/bash
# The RCS figure: a durable gateway (its own redis-server with AOF everysec on
# free loopback ports) with an RCS connector to `goniec rcs-sim`, whose signed
# DELIVERED (and READ) events come back to the gateway's webhook; goniec-load
# waits until every message is delivered. Needs
# `cargo build --release -p goniec-gateway -p goniec-benches` first.
#
# usage: benches/scripts/rcs.sh [COUNT [CONCURRENCY [BATCH [READ_AFTER [until_submitted]]]]]
#   READ_AFTER a duration or `never` (default); AF=true turns anti-fraud on,
#   WC sets workers.concurrency (default 256).
set -u
COUNT=${1:-20000}; CONC=${2:-64}; BATCH=${3:-1}; READ=${4:-never}; UNTIL=${5:-}
cd "$(dirname "$0")/../.."
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
RPORT=$(port); SPORT=$(port); GPORT=$(port)
D=$(mktemp -d)
redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir $D --daemonize no > $D/redis.log 2>&1 &
RPID=$!
./target/release/goniec rcs-sim --listen 127.0.0.1:$SPORT --webhook http://127.0.0.1:$GPORT/v1/webhooks/rcs \
   --client-token bench-client-token-0123456789 --agent-id bench-agent --read-after $READ --delivered-after 100ms > $D/sim.log 2>&1 &
SPID=$!
python3 - "$D" <<'PY'
import sys,re
src=open('connectors/src/rcs/demo-service-account.json').read()
open(sys.argv[1]+'/sa.json','w').write(src)
PY
cat > $D/g.toml <<EOT
[server]
listen = "127.0.0.1:$GPORT"
[store]
backend = "redis"
url = "redis://127.0.0.1:$RPORT"
[workers]
concurrency = ${WC:-256}
[antifraud]
enabled = ${AF:-false}
[[tenants]]
name = "bench"
api_keys = ["sha256:eef8d74a9e97f0aeea7b748dab525bfabce315a3edb5f74dd4786282d738d3fb"]
webhook_secret = "bench-webhook-secret-0123456789"
policy = "transactional"
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
RUST_LOG=warn ./target/release/goniec serve --config $D/g.toml > $D/gw.log 2>&1 &
GPID=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$GPORT/readyz >/dev/null && break; sleep 0.2; done
EXTRA=""; [ -n "$UNTIL" ] && EXTRA="--until-submitted"
./target/release/goniec-load --url http://127.0.0.1:$GPORT --api-key benchkey --channel rcs \
  --count $COUNT --concurrency $CONC --batch $BATCH --wait-final $EXTRA --wait-timeout 300s --duration-limit 300s 2>$D/load.err | tail -n1
grep -E "final statuses" $D/load.err | tail -2
curl -s http://127.0.0.1:$SPORT/stats; echo
curl -s http://127.0.0.1:$GPORT/metrics | grep -E "^goniec_rcs_events_total|^goniec_connector_submits_total" 
ps -o pid,time,cmd -p $GPID,$SPID,$RPID | cat
tail -3 $D/gw.log
kill $GPID $SPID; sleep 1; kill $RPID; wait 2>/dev/null
rm -rf $D
