#!/usr/bin/env bash
# The cost at scale (one command; see README, "Benchmarks"): Latchkey on
# PostgreSQL with 10 million keys in one tenant and 1,000 tenants of 1,000
# keys, against the same measurements at 100,000 keys.
#
# Starts a PostgreSQL cluster of its own (initdb on a free port, never the
# machine's 5432 cluster; shared_buffers 2 GB, fsync on while measuring),
# seeds two databases with `latchkey-seed-scale` (COPY, not GraphQL):
#   small: BENCH_SCALE_BASELINE_KEYS keys in one tenant (default 100,000)
#   large: BENCH_SCALE_KEYS keys in one tenant (default 10,000,000) and
#          BENCH_SCALE_TENANTS tenants of BENCH_SCALE_KEYS_PER_TENANT keys
#          (default 1,000 of 1,000)
# and measures on each, with the release `latchkey serve`:
#   cold verification of distinct keys (wrk, 32 connections, each key at
#     most once, after a restart: nothing cached);
#   the key table (GraphQL, 50 a page) in each order and direction: the
#     first page and the page 10,000 rows deep; search by description;
#     an owner's keys; totalCount; generate (500 in a row);
#   on the large database, the replica's RSS after verifying
#     BENCH_SCALE_RSS_KEYS distinct keys (default 1,000,000).
# Prints one line per measurement and the goals met or missed. Seeding the
# large database takes about fourteen minutes on 2 cores; BENCH_SCALE_KEEP=DIR
# keeps (and reuses) the cluster there; BENCH_SCALE_SEED_ONLY=1 stops after
# seeding (to measure later on a quiet machine).
set -euo pipefail
cd "$(dirname "$0")/.."

BIG="${BENCH_SCALE_KEYS:-10000000}"
TENANTS="${BENCH_SCALE_TENANTS:-1000}"
PER_TENANT="${BENCH_SCALE_KEYS_PER_TENANT:-1000}"
BASELINE="${BENCH_SCALE_BASELINE_KEYS:-100000}"
RSS_KEYS="${BENCH_SCALE_RSS_KEYS:-1000000}"
COLD_SECONDS="${BENCH_SCALE_COLD_SECONDS:-3}"

source scripts/bench-common.sh
cargo build --release -q -p latchkey-tests --bin latchkey-seed-scale
SEED="$PWD/target/release/latchkey-seed-scale"
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }

PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

CLUSTER="${BENCH_SCALE_KEEP:-$(mktemp -d)}"
mkdir -p "$CLUSTER"
WORK="$(mktemp -d)"
[ "$(id -u)" = 0 ] && chown postgres "$CLUSTER"
PGPORT="$(free_port)"
SETTINGS="-c listen_addresses=127.0.0.1 -p $PGPORT -k $CLUSTER -c shared_buffers=2GB -c effective_cache_size=12GB \
-c max_wal_size=16GB -c checkpoint_timeout=30min -c maintenance_work_mem=1GB -c max_connections=200"
pg() { as_postgres "$PGBIN/pg_ctl" -D "$CLUSTER/data" -w -t 600 -l "$CLUSTER/postgres.log" "$@" >/dev/null; }
cleanup() {
  kill "${SERVER_PID:-}" 2>/dev/null || true; wait "${SERVER_PID:-}" 2>/dev/null || true
  pg -m fast stop 2>/dev/null || true
  [ -n "${BENCH_SCALE_KEEP:-}" ] || rm -rf "$CLUSTER"
  rm -rf "$WORK"
}
trap cleanup EXIT

psql_at() { "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -Atq "$@"; }
url_of() { echo "postgres://postgres@127.0.0.1:$PGPORT/$1"; }

if [ ! -d "$CLUSTER/data" ]; then
  as_postgres "$PGBIN/initdb" -D "$CLUSTER/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
fi
# Seeding with fsync off; measuring with it on.
pg -o "$SETTINGS -c fsync=off -c synchronous_commit=off" start
seed() { # database, big-tenant keys, tenants, keys per tenant, secrets to keep
  local db="$1"
  if [ "$(psql_at -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ] && [ -s "$CLUSTER/$db.json" ]; then
    echo "reusing the seeded database $db" >&2; return
  fi
  local started=$SECONDS present=() expected=$(( $2 + $3 * $4 ))
  # A seeding cut off after writing every key (say, by a failure at its end) is finished, not redone.
  if [ "$(psql_at -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ] &&
     [ "$(psql_at -d "$db" -c "SELECT count(*) >= $expected FROM api_keys" 2>/dev/null)" = t ]; then
    echo "finishing the seeding of $db (its keys were written)" >&2; present=(--keys-present)
  else
    psql_at -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  fi
  "$SEED" "$(url_of "$db")" --big-tenant-keys "$2" --tenants "$3" --keys-per-tenant "$4" \
    --secrets "$CLUSTER/$db.secrets" --secrets-count "$5" "${present[@]}" > "$CLUSTER/$db.json"
  echo "SEEDED $db: $(jq -r .keys "$CLUSTER/$db.json") keys in $((SECONDS - started)) s" >&2
}
seed small "$BASELINE" 0 0 "$BASELINE"
seed large "$BIG" "$TENANTS" "$PER_TENANT" "$RSS_KEYS"
pg -m fast stop
[ -z "${BENCH_SCALE_SEED_ONLY:-}" ] || exit 0
pg -o "$SETTINGS" start

export LATCHKEY_JWT_SECRET="bench-secret-bench-secret-bench-secret-0"
export LATCHKEY_MAIL_DIR="$WORK/mail"
export RUST_LOG=warn
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
start_server() { # database
  LATCHKEY_DATABASE_URL="$(url_of "$1")" LATCHKEY_BIND="127.0.0.1:$PORT" "$BIN" serve 2>>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do curl -fs "$URL/healthz" >/dev/null && return; sleep 0.1; done
  echo "latchkey serve did not start" >&2; cat "$WORK/server.log" >&2; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

cold() { # name, secrets file, duration -> "rps p50 p99 requests non2xx"
  KEYS_FILE="$2" THREADS=2 wrk -t2 -c32 -d"$3" --latency -s scripts/cold-keys.lua "$URL/v1/keys/verify" > "$WORK/$1.out"
  local rps p50 p99 requests bad
  rps="$(awk '/Requests\/sec/ {print $2}' "$WORK/$1.out")"
  p50="$(awk '$1=="50%" {print $2}' "$WORK/$1.out")"
  p99="$(awk '$1=="99%" {print $2}' "$WORK/$1.out")"
  requests="$(awk '/requests in/ {print $1}' "$WORK/$1.out")"
  bad="$(awk '/Non-2xx/ {print $5}' "$WORK/$1.out")"
  echo "$rps $p50 $p99 $requests ${bad:-0}"
}

# GraphQL timings from one keep-alive client: each query run several times.
cat > "$WORK/queries.py" <<'PY'
import http.client, json, statistics, sys, time
port, token, owner, label = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
def gql(query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}})
    started = time.perf_counter()
    conn.request("POST", "/graphql", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    took = (time.perf_counter() - started) * 1000
    if answer.get("errors"):
        raise SystemExit(f"{query}: {answer['errors']}")
    return took, answer["data"]
def timed(name, query, variables=None, runs=9):
    times = sorted(gql(query, variables)[0] for _ in range(runs))
    print(f"KEYTABLE {label} {name}: median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms")
    return times
PAGE = "query($o: ApiKeyOrder, $a: String) { apiKeys(first: 50, orderBy: $o, after: $a) { edges { node { id } } pageInfo { endCursor } } }"
slowest = 0.0
for field in ["CREATED_AT", "EXPIRES_AT", "LAST_USED_AT", "USAGE_30D"]:
    for direction in ["DESC", "ASC"]:
        order = {"field": field, "direction": direction}
        slowest = max(slowest, statistics.median(timed(f"first page {field} {direction}", PAGE, {"o": order})))
        # Walk to the page 10,000 rows deep (200 pages of 50), then time it.
        after = None
        for _ in range(200):
            _, data = gql(PAGE, {"o": order, "a": after})
            after = data["apiKeys"]["pageInfo"]["endCursor"]
        slowest = max(slowest, statistics.median(timed(f"page at 10,000 {field} {direction}", PAGE, {"o": order, "a": after})))
SEARCH = "query($s: String) { apiKeys(first: 50, search: $s) { edges { node { id } } } }"
slowest = max(slowest, statistics.median(timed("search 'payroll sync 12345' (few)", SEARCH, {"s": "payroll sync 12345"})))
slowest = max(slowest, statistics.median(timed("search 'reporting' (an eighth)", SEARCH, {"s": "reporting"})))
slowest = max(slowest, statistics.median(timed("search 'no such key' (none)", SEARCH, {"s": "no such key"})))
OWNER = "query($o: ID) { apiKeys(first: 50, ownerId: $o) { edges { node { id } } } }"
slowest = max(slowest, statistics.median(timed("an owner's keys", OWNER, {"o": owner})))
timed("totalCount", "{ apiKeys(first: 1) { totalCount } }", runs=5)
timed("totalCount of a search", "{ apiKeys(first: 1, search: \"reporting\") { totalCount } }", runs=5)
print(f"KEYTABLE {label} slowest page (median): {slowest:.1f} ms")
GENERATE = "mutation($o: ID!, $d: String!) { generateApiKey(input: {ownerId: $o, description: $d}) { secret } }"
times = sorted(gql(GENERATE, {"o": owner, "d": f"bench generate {i}"})[0] for i in range(500))
print(f"GENERATE {label}: p50 {times[250]:.1f} ms, p99 {times[494]:.1f} ms, max {times[-1]:.1f} ms")
PY

measure() { # database
  local db="$1" tenant admin owner token
  tenant="$(jq -r .tenant "$CLUSTER/$db.json")"; admin="$(jq -r .admin "$CLUSTER/$db.json")"
  owner="$(psql_at -d "$db" -c "SELECT owner_id FROM api_keys WHERE tenant_id = '$tenant' LIMIT 1")"
  token="$(LATCHKEY_DATABASE_URL="$(url_of "$db")" "$BIN" token --user "$admin" --ttl-secs 3600)"
  head -n "$BASELINE" "$CLUSTER/$db.secrets" > "$WORK/$db.cold"
  start_server "$db"
  # The key table first: the cold run's uses are then flushed (last use,
  # usage rows) and would be measured along.
  python3 "$WORK/queries.py" "$PORT" "$token" "$owner" "$db" | tee "$WORK/queries_$db.out"
  stop_server
  start_server "$db"
  read -r rps p50 p99 requests bad <<<"$(cold "cold_$db" "$WORK/$db.cold" "${COLD_SECONDS}s")"
  echo "COLD $db: $rps verifications/s, p50 $p50, p99 $p99 ($requests requests over $(wc -l < "$WORK/$db.cold") distinct keys, $bad non-2xx)"
  [ "$requests" -le "$(wc -l < "$WORK/$db.cold")" ] || echo "WARNING: keys repeated in the cold run of $db (shorten BENCH_SCALE_COLD_SECONDS)"
  eval "COLD_RPS_$db=$rps"
  stop_server
}
measure small
measure large

# RSS while a replica verifies a million distinct keys of the large
# database, read after each quarter: the caches are bounded, so it levels off.
start_server large
echo "RSS large: $(ps -o rss= -p "$SERVER_PID" | tr -d ' ') KiB at start"
quarter=$(( RSS_KEYS / 4 ))
for part in 1 2 3 4; do
  sed -n "$(( (part - 1) * quarter + 1 )),$(( part * quarter ))p" "$CLUSTER/large.secrets" > "$WORK/rss_part.secrets"
  read -r rps _ _ requests bad <<<"$(cold rss "$WORK/rss_part.secrets" "$(( quarter / 12000 + 3 ))s")"
  done_keys=$(( (part - 1) * quarter + (requests < quarter ? requests : quarter) ))
  echo "RSS large: $(ps -o rss= -p "$SERVER_PID" | tr -d ' ') KiB after about $done_keys distinct keys ($rps/s, $bad non-2xx)"
done
echo "RSS large: peak $(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status") KiB"
stop_server

echo
ratio="$(python3 -c "print(f'{$COLD_RPS_large / $COLD_RPS_small:.2f}')")"
echo "GOAL cold verification at $BIG keys within 20 % of $BASELINE keys: ratio $ratio ($([ "$(python3 -c "print($ratio >= 0.8)")" = True ] && echo met || echo MISSED))"
slowest="$(awk '/slowest page/ {print $(NF-1)}' "$WORK/queries_large.out")"
echo "GOAL every key-table page < 50 ms: slowest median $slowest ms ($([ "$(python3 -c "print($slowest < 50)")" = True ] && echo met || echo MISSED))"
p99="$(awk '/^GENERATE large/ {print $7}' "$WORK/queries_large.out")"
echo "GOAL generate p99 < 20 ms: $p99 ms ($([ "$(python3 -c "print($p99 < 20)")" = True ] && echo met || echo MISSED))"
