#!/bin/bash
# Chaos under load: for each scenario a fresh rig (redis-server with AOF
# everysec, `goniec smsc-sim` with receipts, `goniec serve` with an SMPP
# connector, all on free loopback ports), goniec-load sending single SMS, and
# one fault once FAULT_AT % of the messages were accepted:
#
#   gateway-kill       kill -9 the gateway, restart it (same config) DOWN s later;
#                      the clients come back with COUNT/2 more messages
#   redis-kill         kill -9 redis-server, restart it on the same port and AOF dir
#   smsc-kill          kill -9 the SMSC simulator, restart it on the same port
#   two-instance-kill  two gateways on one Redis, each with its own loader (the
#                      second through a forwarder, like a load balancer); kill -9
#                      the second, never restart it, point the forwarder at the first
#
# Prints a line per scenario and a table: accepted, lost, stuck, duplicates,
# recovery times (see benches/README.md, "Chaos"). Exits 1 if any scenario has
# a lost or stuck message, 2 on a usage error.
#
# usage: benches/scripts/chaos.sh [--bin DIR] [SCENARIO...]
#   --bin DIR (or GONIEC_BIN): goniec and goniec-load (default target/release);
#   they are copied before the run. Knobs (environment): COUNT (30000 messages
#   per scenario), CONC (48 loader workers), FAULT_AT (40 %), DOWN (3 s),
#   STUCK_WAIT (120 s after the fault's end), CLAIM_IDLE (10s), TPS (the
#   connector's rate, unlimited), GW_LOG (RUST_LOG of the gateways, info),
#   KEEP=1 keeps the run's directory (logs, timelines, configs).
set -u
SCENARIOS=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin) [ $# -ge 2 ] || { echo "--bin needs a directory" >&2; exit 2; }
           GONIEC_BIN=$(cd "$2" && pwd) || exit 2; export GONIEC_BIN; shift 2 ;;
    gateway-kill|redis-kill|smsc-kill|two-instance-kill) SCENARIOS+=("$1"); shift ;;
    *) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2 ;;
  esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(gateway-kill redis-kill smsc-kill two-instance-kill)
command -v redis-server >/dev/null && command -v python3 >/dev/null && command -v curl >/dev/null ||
  { echo "chaos.sh needs redis-server, python3 and curl" >&2; exit 2; }

. "$(dirname "$0")/common.sh"
ROOT=$D
COUNT=${COUNT:-30000}; CONC=${CONC:-48}; FAULT_AT=${FAULT_AT:-40}; DOWN=${DOWN:-3}
STUCK_WAIT=${STUCK_WAIT:-120}; CLAIM_IDLE=${CLAIM_IDLE:-10s}; GW_LOG=${GW_LOG:-info}
# A killed SMSC takes the receipts it had not sent yet with it. The gateway then
# asks with query_sm and, when the restarted SMSC no longer knows the message,
# ends it `expired` (reason no_receipt) after its validity plus a grace. The rig
# shortens those from hours to seconds so that they fall inside STUCK_WAIT.
export QUERY_AFTER=${QUERY_AFTER:-5s} DEFAULT_VALIDITY=${DEFAULT_VALIDITY:-30s} RECEIPT_GRACE=${RECEIPT_GRACE:-10s}
# goniec-load's wait starts when its sending ends, at the fault at the earliest:
# this keeps polling at least STUCK_WAIT s after the fault's end.
WAIT_TIMEOUT=$((STUCK_WAIT + DOWN + 15))s
# Run in the background as `$HELPER ... &`, never through a function: then $! is
# python itself, and stopping it by that PID stops it.
HELPER="python3 benches/scripts/chaos.py"
helper() { $HELPER "$@"; }

# Everything still running that this script started (its own background jobs:
# bash forgets a job once it was waited for, so a reused PID is never hit).
cleanup() {
  local left; left=$(jobs -p)
  [ -n "$left" ] && kill $left 2>/dev/null
  wait 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "chaos: files kept in $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ev() { echo "$1 $(date +%s.%N)" >> "$D/events"; }
# kill -9 one process this script started, and reap it.
kill9() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# Stop one process this script started (TERM, then KILL after 10 s), and reap it.
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  kill9 "$1"
}

LPIDS=()
# loader NAME URL COUNT: goniec-load in the background, files $D/load-NAME.{out,err}.
loader() {
  ev "load-$1_start"
  timeout -k 5 $((300 + ${WAIT_TIMEOUT%s} + 60)) "$LOAD" --url "$2" --api-key benchkey --count "$3" --concurrency "$CONC" \
    --wait-final --wait-timeout "$WAIT_TIMEOUT" --duration-limit 300s \
    > "$D/load-$1.out" 2> "$D/load-$1.err" &
  LPIDS+=($!)
}

# Until the simulator took no submit_sm for 2 s (at most 30 s): the stragglers
# nobody polls (a 202 lost with a killed gateway) are in the store by then.
settle() {
  local last=-1 same=0 now
  for _ in $(seq 150); do
    now=$(curl -s "http://127.0.0.1:$HPORT/stats" | sed -n 's/.*"submits":\([0-9]*\).*/\1/p')
    if [ "$now" = "$last" ]; then same=$((same + 1)); [ $same -ge 10 ] && return; else same=0; fi
    last=$now; sleep 0.2
  done
}

run() {
  local name=$1 fault_n=$((COUNT * FAULT_AT / 100)) g1 g2 fwd sampler
  D=$ROOT/$name; mkdir -p "$D"; : > "$D/events"
  RPORT=$(port); SPORT=$(port); HPORT=$(port); GPORT=$(port); LPIDS=()
  echo "== $name: $COUNT messages, concurrency $CONC, fault at $FAULT_AT % accepted, down ${DOWN}s"
  start_redis; start_smsc_sim
  { gateway_head; smpp_connector; } > "$D/g.toml"
  if [ "$name" = two-instance-kill ]; then
    local g2port fport; g2port=$(port); fport=$(port)
    sed "s/^listen = .*/listen = \"127.0.0.1:$g2port\"/" "$D/g.toml" > "$D/g2.toml"
    start_gateway "$D/g.toml" "$GPORT" "$D/gw.log"; g1=$GPID
    start_gateway "$D/g2.toml" "$g2port" "$D/gw2.log"; g2=$GPID
    echo "$g2port" > "$D/forward-to"
    $HELPER forward "$fport" "$D/forward-to" 2> "$D/forward.log" & fwd=$!
    $HELPER sample "$D/timeline.jsonl" --gw "g1=$GPORT" --gw "g2=$g2port" --sim "$HPORT" & sampler=$!
    sleep 0.5
    loader a "http://127.0.0.1:$GPORT" $((COUNT / 2))
    loader b "http://127.0.0.1:$fport" $((COUNT / 2))
    helper wait-accepted "$fault_n" --gw "$GPORT" --gw "$g2port" --min-s 1.5
    ev fault; kill9 "$g2"
    echo "$GPORT" > "$D/forward-to"   # the balancer notices: new connections go to g1
    ev fault_end
  else
    start_gateway; g1=$GPID
    $HELPER sample "$D/timeline.jsonl" --gw "g1=$GPORT" --sim "$HPORT" & sampler=$!
    sleep 0.5
    loader main "http://127.0.0.1:$GPORT" "$COUNT"
    helper wait-accepted "$fault_n" --gw "$GPORT" --min-s 1.5
    case $name in
      gateway-kill)
        ev fault; kill9 "$g1"; sleep "$DOWN"; ev fault_end
        start_gateway; g1=$GPID
        loader resume "http://127.0.0.1:$GPORT" $((COUNT / 2)) ;;
      redis-kill)
        ev fault; kill9 "$RPID"; sleep "$DOWN"; ev fault_end; start_redis ;;
      smsc-kill)
        # (stderr hides bash's "Killed" notice for the simulator)
        { helper kill-sim "$HPORT" "$SPID" "$D/sim-before-kill.json" "$D/events"; wait "$SPID"; } 2>/dev/null
        sleep "$DOWN"; ev fault_end; start_smsc_sim ;;
    esac
  fi
  for p in "${LPIDS[@]}"; do wait "$p"; done
  settle
  curl -s "http://127.0.0.1:$HPORT/stats" > "$D/sim-end.json"
  curl -s "http://127.0.0.1:$GPORT/metrics" > "$D/metrics-end.txt"
  helper census "$RPORT" goniec "$D/census.json"
  stop "$sampler"; [ "$name" = two-instance-kill ] && stop "$fwd"
  stop "$g1"; stop "$SPID"; stop "$RPID"
  helper report "$D" "$name"
  for f in "$D"/gw*.log; do
    grep -E "WARN|ERROR|Took over" "$f" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -5 |
      sed "s|^|  $(basename "$f"): |"
  done
}

for s in "${SCENARIOS[@]}"; do run "$s"; done
echo
helper table "$ROOT/results.jsonl"
