#!/bin/bash
# The e-mail figure: a durable gateway (its own redis-server with AOF everysec on
# free loopback ports) delivering to `goniec smtp-sink` over real SMTP, driven by
# goniec-load with 10 KB HTML bodies until every message is `submitted`.
# Needs `cargo build --release -p goniec-gateway -p goniec-benches` first.
#
# usage: benches/scripts/email.sh [COUNT [CONCURRENCY [BATCH [TLS [POOL]]]]]
#   TLS none|starttls (default none), POOL the SMTP connections (default 16);
#   AF=true turns anti-fraud on.
set -u
COUNT=${1:-20000}; CONC=${2:-64}; BATCH=${3:-1}; TLS=${4:-none}; POOL=${5:-16}
cd "$(dirname "$0")/../.."
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
RPORT=$(port); SPORT=$(port); GPORT=$(port)
D=$(mktemp -d)
redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir $D --daemonize no > $D/redis.log 2>&1 &
RPID=$!
SINKARGS=""
[ "$TLS" = starttls ] && SINKARGS="--starttls"
./target/release/goniec smtp-sink --listen 127.0.0.1:$SPORT --keep 0 --bounce-prefix '' $SINKARGS > $D/sink.log 2>&1 &
SPID=$!
cat > $D/g.toml <<EOT
[server]
listen = "127.0.0.1:$GPORT"
[store]
backend = "redis"
url = "redis://127.0.0.1:$RPORT"
[workers]
concurrency = 256
[antifraud]
enabled = ${AF:-false}
[[tenants]]
name = "bench"
api_keys = ["sha256:eef8d74a9e97f0aeea7b748dab525bfabce315a3edb5f74dd4786282d738d3fb"]
webhook_secret = "bench-webhook-secret-0123456789"
policy = "transactional"
[[connectors]]
name = "relay"
kind = "smtp"
port = $SPORT
tls = "$TLS"
tls_accept_invalid_certs = true
pool_size = $POOL
from = "ACME <noreply@acme.example>"
[[routes]]
channel = "email"
connector = "relay"
EOT
RUST_LOG=warn ./target/release/goniec serve --config $D/g.toml > $D/gw.log 2>&1 &
GPID=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$GPORT/readyz >/dev/null && break; sleep 0.2; done
./target/release/goniec-load --url http://127.0.0.1:$GPORT --api-key benchkey --channel email \
  --count $COUNT --concurrency $CONC --batch $BATCH --wait-final --until-submitted --wait-timeout 300s --duration-limit 300s 2>$D/load.err | tail -n1
grep -E "final statuses|errors" $D/load.err | tail -3
ps -o pid,time,cmd -p $GPID,$SPID,$RPID | cat
kill $GPID $SPID; sleep 1; kill $RPID; wait 2>/dev/null
rm -rf $D
