# shellcheck shell=bash
# The cluster scenarios of benches/fanout.sh, which sources this file: one
# room served by several tcp_server nodes through a real nats-server with
# JetStream (tcp_server --nats <url> --room bench; PROTOCOL.md, "One room
# across servers"). chat_bench spreads the members over the nodes round
# robin (senders too) and checks that every member sees one order.
#
#   A-cluster  A over 3 nodes: 100 members (34/33/33), 10 senders flat out
#              (window 128, --ack all), all public. Target on 2 cores:
#              >= 2M deliveries/s, 0 lost, 0 order violations. Also the p99
#              latency of public lines across nodes (flat out: mostly the
#              time a line waits behind the senders' windows).
#   A-nats     A on one node with --nats (and its nats-server) against the
#              same node without it: the engine's cost, as a ratio.
#   B-cluster  B over 3 nodes: 1000 members, 10 senders x 100 msg/s, public
#              (1M deliveries/s): the p99 latency of public lines across
#              nodes at a steady load.
#   C-cluster  C over 3 nodes: 1000 members, 100 senders whispering flat
#              out (window 128) to random members: whispers/s, and their
#              p99 across nodes (flat out: mostly time spent in the window).
#   W-cluster  whispers across nodes: 3 nodes, 1000 members, 100 senders x
#              10 whispers/s to random members (two in three on another
#              node): the p99 latency of whispers across nodes.
#
# Every run gets a fresh nats-server (`nats-server -js -sd <new temporary
# dir> -p <free port>`, loopback; Debian's 2.9, .ci/nats.sh installs it)
# and fresh nodes. The "server" CPU and memory figures add up every node
# and the nats-server. Only the processes started here are stopped, and
# the temporary directories removed. The uptime at the start of each run
# is kept next to its JSON ($OUT/<scenario>.<label>.<run>.uptime).
#
# Environment: CLUSTER_NODES=3 (the nodes of the *-cluster scenarios);
# CHAT_SERVER_ARGS and BENCH_ARGS apply as to the other scenarios.

CLUSTER_NODES=${CLUSTER_NODES:-3}
CLUSTER_NODE_PIDS=()
CLUSTER_NATS_PID=""
CLUSTER_DIR=""
CLUSTER_PORT=""

# Whether $1 is one of the scenarios above.
is_cluster_scenario() {
  case $1 in
    A-cluster | A-nats | B-cluster | C-cluster | W-cluster) return 0 ;;
    *) return 1 ;;
  esac
}

# Whether any scenario of $SCENARIOS is a cluster scenario.
cluster_wanted() {
  local sc
  for sc in $SCENARIOS; do
    is_cluster_scenario "$sc" && return 0
  done
  return 1
}

# Waits up to $3 seconds for "host:port" at the end of a line matching $2 in
# file $1, while process $4 lives; sets CLUSTER_PORT.
cluster_wait_port() {
  local file=$1 pattern=$2 secs=$3 pid=$4 line
  for _ in $(seq $((secs * 20))); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [[ -n "$line" ]]; then
      CLUSTER_PORT=${line##*:}
      CLUSTER_PORT=${CLUSTER_PORT//[^0-9]/}
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Stops process $1: SIGTERM, up to 10 s, then SIGKILL.
cluster_stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Stops what cluster_start started: the nodes first (each says goodbye to
# the room), then the nats-server; removes its directory.
cluster_stop() {
  local pid
  for pid in "${CLUSTER_NODE_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${CLUSTER_NODE_PIDS[@]}"; do
    cluster_stop_pid "$pid"
  done
  CLUSTER_NODE_PIDS=()
  if [[ -n "$CLUSTER_NATS_PID" ]]; then
    cluster_stop_pid "$CLUSTER_NATS_PID"
    CLUSTER_NATS_PID=""
  fi
  if [[ -n "$CLUSTER_DIR" ]]; then
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=""
  fi
}

# cluster_start LOG NODES NATS: starts NODES tcp_servers (NATS=1: a fresh
# nats-server first, and the nodes on it in the room bench). Sets
# CLUSTER_ADDRS (chat_bench's --addr flags), CLUSTER_PIDS (its
# --server-pid flags) and CLUSTER_CMDS (what was started, for the log).
cluster_start() {
  local log=$1 nodes=$2 nats=$3 url="" i
  CLUSTER_ADDRS=""
  CLUSTER_PIDS=""
  CLUSTER_CMDS=""
  local node_args=()
  if ((nats)); then
    command -v nats-server >/dev/null 2>&1 || {
      echo "!! nats-server not found (.ci/nats.sh installs it)" >&2
      return 1
    }
    CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatcore-fanout.XXXXXX")
    rm -f "$log.nats.log"
    nats-server -js -sd "$CLUSTER_DIR/js" -a 127.0.0.1 -p -1 >"$log.nats.log" 2>&1 &
    CLUSTER_NATS_PID=$!
    cluster_wait_port "$log.nats.log" 'Listening for client connections on ' 10 "$CLUSTER_NATS_PID" ||
      return 1
    url="nats://127.0.0.1:$CLUSTER_PORT"
    # JetStream is up once the server says it is ready.
    for _ in $(seq 200); do
      grep -q 'Server is ready' "$log.nats.log" && break
      sleep 0.05
    done
    node_args=(--nats "$url" --room bench)
    CLUSTER_CMDS="nats-server -js -sd $CLUSTER_DIR/js -a 127.0.0.1 -p -1 (port $CLUSTER_PORT)"
    CLUSTER_PIDS="--server-pid $CLUSTER_NATS_PID"
  fi
  for i in $(seq "$nodes"); do
    rm -f "$log.node$i.out" "$log.node$i.err"
    # shellcheck disable=SC2086
    "$BIN/tcp_server" --addr 127.0.0.1:0 "${node_args[@]}" $CHAT_SERVER_ARGS \
      >"$log.node$i.out" 2>"$log.node$i.err" &
    CLUSTER_NODE_PIDS+=($!)
  done
  for i in $(seq "$nodes"); do
    # A node reads the room back from NATS before it listens.
    cluster_wait_port "$log.node$i.out" '^Server listening on ' 30 "${CLUSTER_NODE_PIDS[$((i - 1))]}" ||
      return 1
    CLUSTER_ADDRS="$CLUSTER_ADDRS --addr 127.0.0.1:$CLUSTER_PORT"
    CLUSTER_PIDS="$CLUSTER_PIDS --server-pid ${CLUSTER_NODE_PIDS[$((i - 1))]}"
    CLUSTER_CMDS="${CLUSTER_CMDS:+$CLUSTER_CMDS
   }tcp_server --addr 127.0.0.1:0 ${node_args[*]} $CHAT_SERVER_ARGS (port $CLUSTER_PORT)"
  done
}

# cluster_bench SCENARIO LABEL RUN NODES NATS LOAD: one run of chat_bench
# with LOAD over a fresh cluster, into $OUT/SCENARIO.LABEL.RUN.json.
cluster_bench() {
  local sc=$1 label=$2 run=$3 nodes=$4 nats=$5 load=$6
  local tag="$sc.$label.$run" rc args
  if ! cluster_start "$OUT/$tag.server" "$nodes" "$nats"; then
    echo "!! $tag: the cluster did not start (see $OUT/$tag.server.*)" >&2
    cluster_stop
    return 0
  fi
  args="$CLUSTER_ADDRS --proto chat $load $CLUSTER_PIDS --json $BENCH_ARGS"
  uptime >"$OUT/$tag.uptime"
  echo "== $tag ($(cat "$OUT/$tag.uptime")):"
  echo "   $CLUSTER_CMDS"
  echo "   chat_bench $args"
  # shellcheck disable=SC2086
  timeout -k 5 "$RUN_TIMEOUT" "$BIN/chat_bench" $args \
    >"$OUT/$tag.json" 2>"$OUT/$tag.err" && rc=0 || rc=$?
  case $rc in
    0) ;;
    1) echo "   checks failed (see the table)" ;;
    *) echo "!! $tag: chat_bench exited with $rc: $(head -c 300 "$OUT/$tag.err")" ;;
  esac
  cluster_stop
}

# cluster_run SCENARIO RUN: one round of a cluster scenario.
cluster_run() {
  local sc=$1 run=$2 n=$CLUSTER_NODES
  case $sc in
    A-cluster) cluster_bench "$sc" chat "$run" "$n" 1 "$(scenario_args A)" ;;
    A-nats)
      # The two take turns at going first, run by run.
      if ((run % 2)); then
        cluster_bench "$sc" chat "$run" 1 1 "$(scenario_args A)"
        cluster_bench "$sc" plain "$run" 1 0 "$(scenario_args A)"
      else
        cluster_bench "$sc" plain "$run" 1 0 "$(scenario_args A)"
        cluster_bench "$sc" chat "$run" 1 1 "$(scenario_args A)"
      fi
      ;;
    B-cluster) cluster_bench "$sc" chat "$run" "$n" 1 "$(scenario_args B)" ;;
    C-cluster) cluster_bench "$sc" chat "$run" "$n" 1 "$(scenario_args C)" ;;
    W-cluster)
      cluster_bench "$sc" chat "$run" "$n" 1 \
        "--mode private --members 1000 --senders 100 --rate 10 --duration $DURATION"
      ;;
  esac
}

# cluster_row LABEL SCENARIO VALUE TARGET: a row with the figure in the
# chatcore column (in either table layout).
cluster_row() {
  # The scenario's column is 6 wide: a longer name takes from the label's.
  local w=$((28 - ${#2} + 6))
  ((w > 28)) && w=28
  if [[ -n "$BASELINE" ]]; then
    printf '%-6s %-*s %16s %16s %9s %16s %9s   %s\n' "$2" "$w" "$1" "$3" "" "" "" "" "$4"
  else
    printf '%-6s %-*s %16s %16s %9s   %s\n' "$2" "$w" "$1" "$3" "" "" "$4"
  fi
}

# cluster_fig SCENARIO LABEL KEY how decimals: a figure over the runs.
cluster_fig() {
  fmt "$(agg "$1" "$2" "$3" "$4")" "$5"
}

# cluster_rows SCENARIO: the table's rows of a cluster scenario.
cluster_rows() {
  local sc=$1 key v with without
  case $sc in
    A-cluster)
      cluster_row "deliveries/s, $CLUSTER_NODES nodes" "$sc" "$(cluster_fig "$sc" chat deliveries_per_sec median 0)" ">= 2000000"
      cluster_row "latency p99 ms" "$sc" "$(cluster_fig "$sc" chat p99_ms median 1)" ""
      cluster_row "p99 ms across nodes" "$sc" "$(cluster_fig "$sc" chat cross_p99_ms median 1)" ""
      ;;
    A-nats)
      with=$(agg "$sc" chat deliveries_per_sec median)
      without=$(agg "$sc" plain deliveries_per_sec median)
      cluster_row "deliveries/s, --nats" "$sc" "$(fmt "$with" 0)" ""
      cluster_row "deliveries/s, without" "$sc" "$(fmt "$without" 0)" ""
      cluster_row "--nats / without" "$sc" "$(ratio "$with" "$without")" "the engine's cost"
      cluster_row "latency p99 ms, --nats" "$sc" "$(cluster_fig "$sc" chat p99_ms median 1)" ""
      cluster_row "latency p99 ms, without" "$sc" "$(cluster_fig "$sc" plain p99_ms median 1)" ""
      cluster_row "server cpu s, --nats" "$sc" "$(cluster_fig "$sc" chat server_cpu_run_secs median 2)" "node + nats-server"
      cluster_row "server cpu s, without" "$sc" "$(cluster_fig "$sc" plain server_cpu_run_secs median 2)" ""
      cluster_row "lost, --nats" "$sc" "$(cluster_fig "$sc" chat lost max 0)" "0"
      cluster_row "lost, without" "$sc" "$(cluster_fig "$sc" plain lost max 0)" "0"
      ;;
    B-cluster)
      cluster_row "deliveries/s, $CLUSTER_NODES nodes" "$sc" "$(cluster_fig "$sc" chat deliveries_per_sec median 0)" "~1M"
      cluster_row "latency p50 ms" "$sc" "$(cluster_fig "$sc" chat p50_ms median 2)" ""
      cluster_row "latency p99 ms" "$sc" "$(cluster_fig "$sc" chat p99_ms median 2)" ""
      cluster_row "p99 ms across nodes" "$sc" "$(cluster_fig "$sc" chat cross_p99_ms median 2)" ""
      ;;
    C-cluster)
      cluster_row "whispers/s, $CLUSTER_NODES nodes" "$sc" "$(cluster_fig "$sc" chat messages_per_sec median 0)" ""
      cluster_row "latency p99 ms" "$sc" "$(cluster_fig "$sc" chat p99_ms median 1)" ""
      cluster_row "p99 ms across nodes" "$sc" "$(cluster_fig "$sc" chat cross_p99_ms median 1)" ""
      ;;
    W-cluster)
      cluster_row "whispers/s, $CLUSTER_NODES nodes" "$sc" "$(cluster_fig "$sc" chat messages_per_sec median 0)" "1000"
      cluster_row "latency p50 ms" "$sc" "$(cluster_fig "$sc" chat p50_ms median 2)" ""
      cluster_row "latency p99 ms" "$sc" "$(cluster_fig "$sc" chat p99_ms median 2)" ""
      cluster_row "p99 ms across nodes" "$sc" "$(cluster_fig "$sc" chat cross_p99_ms median 2)" ""
      ;;
  esac
  [[ "$sc" == A-nats ]] && return 0
  cluster_row "lost" "$sc" "$(cluster_fig "$sc" chat lost max 0)" "0"
  if [[ "$sc" == A-cluster || "$sc" == B-cluster ]]; then  # public lines
    cluster_row "order violations" "$sc" "$(cluster_fig "$sc" chat order_violations max 0)" "0"
  fi
  cluster_row "server cpu s (run)" "$sc" "$(cluster_fig "$sc" chat server_cpu_run_secs median 2)" "nodes + nats-server"
  for key in dups misordered disconnected; do
    v=$(agg "$sc" chat "$key" max)
    if [[ "${v:-0}" != 0 ]]; then
      cluster_row "$key" "$sc" "$(fmt "$v" 0)" "0"
    fi
  done
}
