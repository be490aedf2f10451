# Shared by the channel rigs (sourced, not run): free ports, a durable
# redis-server, the gateway config's common part, starting the gateway, and
# stopping only the processes the rig started.
cd "$(dirname "$0")/../.." || exit 2
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
RPORT=$(port); SPORT=$(port); GPORT=$(port)
D=$(mktemp -d)

start_redis() {
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync everysec --dir "$D" --daemonize no > "$D/redis.log" 2>&1 &
  RPID=$!
}

# The gateway config up to the connectors: Redis store, one transactional tenant
# whose API key is `benchkey`; AF=true turns anti-fraud on, WC sets
# workers.concurrency (default 256).
gateway_head() {
  cat <<EOT
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
EOT
}

# Start `goniec serve` on $D/g.toml and wait until it is ready.
start_gateway() {
  RUST_LOG=warn ./target/release/goniec serve --config "$D/g.toml" > "$D/gw.log" 2>&1 &
  GPID=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$GPORT/readyz" >/dev/null && break; sleep 0.2; done
}

# goniec-load against the gateway; prints its JSON line and the final statuses.
load() {
  ./target/release/goniec-load --url "http://127.0.0.1:$GPORT" --api-key benchkey \
    --wait-final --wait-timeout 300s --duration-limit 300s "$@" 2>"$D/load.err" | tail -n1
  grep -E "final statuses" "$D/load.err" | tail -2
}

# CPU time of each process, then stop them (the gateway first, Redis last).
finish() {
  ps -o pid,time,cmd -p "$GPID,$SPID,$RPID" | cat
  kill "$GPID" "$SPID"; sleep 1; kill "$RPID"; wait 2>/dev/null
  rm -rf "$D"
}
