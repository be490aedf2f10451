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
. "$(dirname "$0")/common.sh"
start_redis
SINKARGS=()
[ "$TLS" = starttls ] && SINKARGS=(--starttls)
"$GONIEC" smtp-sink --listen "127.0.0.1:$SPORT" --keep 0 --bounce-prefix '' "${SINKARGS[@]}" > "$D/sink.log" 2>&1 &
SPID=$!
{ gateway_head; cat <<EOT
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
} > "$D/g.toml"
start_gateway
load --channel email --count "$COUNT" --concurrency "$CONC" --batch "$BATCH" --until-submitted
finish
