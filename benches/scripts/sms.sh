#!/bin/bash
# The end-to-end SMS figure (issue 13's scenario): a durable gateway (its own
# redis-server with AOF everysec on free loopback ports) with an SMPP connector
# to `goniec smsc-sim` sending receipts at once, every status change posted as a
# signed callback to a local sink; the run ends when the sink has a final
# callback for every message (goniec-load does not poll statuses: see
# load_sent in common.sh). Prints goniec-load's JSON line, the CPU seconds and peak RSS of
# the gateway and of Redis, Redis commands per message (INFO commandstats, script-internal
# commands included) and the callbacks the sink got. Needs
# `cargo build --release -p goniec-gateway -p goniec-benches` first.
#
# usage: benches/scripts/sms.sh [COUNT [CONCURRENCY [BATCH]]]
#   RECIPIENTS=world sends to a mobile of every region in turn (default
#   random Polish mobiles); AF=true turns anti-fraud on; WC sets workers.concurrency (default 256);
#   CB_BATCH='{ max = 100, linger = "20ms" }' batches the callbacks; SIM_ARGS
#   passes simulator flags (e.g. "--throttle-every 10"). CONSOLE=1 keeps an
#   operator console's live stream (GET /v1/admin/stream) open during the run,
#   to measure what watching costs.
set -u
COUNT=${1:-20000}; CONC=${2:-64}; BATCH=${3:-1}
. "$(dirname "$0")/common.sh"
start_redis
RECEIPT_DELAY=${RECEIPT_DELAY:-0s} start_smsc_sim
start_sink
{ gateway_head
  echo "callback_url = \"http://127.0.0.1:$CPORT/cb\""
  echo "allow_private_callbacks = true"
  # CB_BATCH='{ max = 100, linger = "20ms" }' posts callbacks in batches.
  [ -n "${CB_BATCH:-}" ] && echo "callback_batch = $CB_BATCH"
  # AF=true: every check on but pumping, which compares with a 24-hour history a
  # fresh rig does not have (any load looks like pumping: held), as in the demo.
  [ "${AF:-false}" = true ] && printf '[tenants.antifraud.pumping]\nenabled = false\n[tenants.antifraud.pumping.sequential]\nenabled = false\n'
  smpp_connector; } > "$D/g.toml"
start_gateway
if [ "${CONSOLE:-0}" = 1 ]; then
  curl -sN -H 'Authorization: Bearer benchadmin' "http://127.0.0.1:$GPORT/v1/admin/stream" > "$D/console.sse" &
  CONSOLE_PID=$!
fi
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
t0=$(date +%s.%N)
load_sent --channel sms --count "$COUNT" --concurrency "$CONC" --batch "$BATCH" --recipients "${RECIPIENTS:-random}"
report_final "$COUNT" "$t0"
calls=$(redis-cli -p "$RPORT" INFO commandstats | awk -F'[=,:]' '/^cmdstat_/ {s += $3} END {print s}')
echo "redis commands per message: $(python3 -c "print(round($calls / $COUNT, 1))") ($calls for $COUNT)"
# Per command: calls per message and microseconds per call (script-internal
# commands are counted too: EVALSHA's own time includes theirs).
redis-cli -p "$RPORT" INFO commandstats | python3 -c '
import sys
n = int(sys.argv[1]); rows = []
for line in sys.stdin:
    if not line.startswith("cmdstat_"): continue
    name, kv = line.strip()[8:].split(":", 1)
    f = dict(x.split("=") for x in kv.split(","))
    rows.append((int(f["calls"]) / n, name, float(f["usec_per_call"])))
rows.sort(reverse=True)
print("  per message:", " ".join(f"{c}={k:.2f}({u:.0f}us)" for k, c, u in rows[:14]))
' "$COUNT"
echo "sink (POSTs, final callbacks, callbacks): $(sink_count)"
curl -s "http://127.0.0.1:$HPORT/stats" | python3 -c 'import json, sys; s = json.load(sys.stdin); print("smsc-sim: submits", s["submits"], "throttled", s["throttled"], "receipts acked", s["receipts_acked"])'
echo "cpu seconds: gateway $(cpu "$GPID") redis $(cpu "$RPID") smsc-sim $(cpu "$SPID") callback-sink $(cpu "$CB_PID")"
echo "peak RSS MiB: gateway $(rss "$GPID") redis $(rss "$RPID")"
echo "redis AOF: $(aof_stats "$RPORT")"
applied=$(applied_statuses)
echo "status changes applied (gateway metrics): $applied"
case " $applied " in
  *" delivered=$COUNT "*) ;;
  *) echo "WARNING: the gateway's metrics do not show delivered=$COUNT" ;;
esac
if [ -n "${CONSOLE_PID:-}" ]; then
  kill "$CONSOLE_PID"
  echo "console: $(grep -c '^event: overview' "$D/console.sse") overviews streamed"
fi
kill "$CB_PID"
finish
