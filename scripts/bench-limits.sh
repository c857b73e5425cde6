#!/usr/bin/env bash
# Limits across replicas, on PostgreSQL (one command; see README).
#
# Builds release, creates a fresh database on the local PostgreSQL
# (BENCH_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres),
# starts 3 `latchkey serve` replicas on it and drives them with one wrk per
# replica (BENCH_DURATION, default 10 s):
#   1. an unlimited key, round robin: requests/s (sum) and p99 (worst replica);
#   2. a key with two rate limits and credits, none reached: the same, and the
#      database transactions per 1,000 verifications of each case;
#   3. accuracy: a key limited to BENCH_LIMIT (default 20,000) per 10 s window,
#      loaded far above the limit with round-robin and with skewed traffic
#      (one replica unthrottled, two paced at 1 ms per request per connection;
#      the shares of requests are printed); what each full window admitted in
#      all, against the bound
#      0.9 × L ≤ admitted ≤ 1.1 × L + 3 (the design's: L − 3·⌈L/40⌉ ≤ admitted ≤ L).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-10s}"
ACCURACY_DURATION="${BENCH_ACCURACY_DURATION:-32s}"
LIMIT="${BENCH_LIMIT:-20000}"
ADMIN_URL="${BENCH_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

source scripts/bench-common.sh
WORK="$(mktemp -d)"
DB="latchkey_bench_limits_$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
export LATCHKEY_DATABASE_URL="${ADMIN_URL%/*}/$DB"
export LATCHKEY_JWT_SECRET="bench-secret-bench-secret-bench-secret-0"
export LATCHKEY_MAIL_DIR="$WORK/mail"
export RUST_LOG=warn
"$BIN" migrate >/dev/null

TENANT="$("$BIN" tenant create --name Bench | jq -r .id)"
ADMIN="$("$BIN" user create --tenant "$TENANT" --email admin@bench.example --name Admin --role internal-admin | jq -r .id)"
BOT="$("$BIN" user create --tenant "$TENANT" --email bot@bench.example --name Bot --role integration-user | jq -r .id)"
TOKEN="$("$BIN" token --user "$ADMIN" --ttl-secs 3600)"

URLS=()
for _ in 1 2 3; do
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  LATCHKEY_BIND="127.0.0.1:$port" LATCHKEY_WORKERS=1 "$BIN" serve 2>>"$WORK/server.log" &
  PIDS+=($!)
  URLS+=("http://127.0.0.1:$port")
done
for url in "${URLS[@]}"; do
  for _ in $(seq 1 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.1; done
done

generate() { # extra GraphQL input fields -> secret
  curl -fs "${URLS[0]}/graphql" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "$(jq -nc --arg owner "$BOT" --arg extra "$1" \
      '{query: ("mutation($o: ID!) { generateApiKey(input: {ownerId: $o, description: \"bench\"" + $extra + "}) { secret } }"), variables: {o: $owner}}')" \
    | jq -r .data.generateApiKey.secret
}
UNLIMITED="$(generate "")"
LIMITED="$(generate ', rateLimits: [{name: "minute", limit: 100000000, periodSeconds: 60}, {name: "day", limit: 1000000000, periodSeconds: 86400}], credits: {remaining: 1000000000}')"
ACCURACY="$(generate ", rateLimits: [{name: \"window\", limit: $LIMIT, periodSeconds: 10}]")"

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
LUA
# Counts admitted answers per 10 s window (by the client's clock) and writes them to OUT.
cat > "$WORK/count.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
local pace = tonumber(os.getenv("PACE_MS") or "")
if pace then function delay() return pace end end
counts = {}
function response(status, headers, body)
  if string.find(body, '"valid":true', 1, true) then
    local w = math.floor(os.time() / 10)
    counts[w] = (counts[w] or 0) + 1
  end
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for w, n in pairs(t:get("counts")) do total[w] = (total[w] or 0) + n end
  end
  local f = io.open(os.getenv("OUT"), "w")
  for w, n in pairs(total) do f:write(w, " ", n, "\n") end
  f:close()
end
LUA

commits() { psql -tAq "$ADMIN_URL" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }

load() { # name, key, connections per replica (3 numbers), script, [duration], [pace of replicas 2 and 3, ms]
  local name="$1" key="$2" script="$6" duration="${7:-$DURATION}" pace="${8:-}" i=0 pids=()
  for c in "$3" "$4" "$5"; do
    local paced=""; [ "$i" -gt 0 ] && paced="$pace"
    BODY="{\"key\":\"$key\"}" OUT="$WORK/$name.$i.counts" PACE_MS="$paced" \
      wrk -t1 -c"$c" -d"$duration" --latency -s "$script" "${URLS[$i]}/v1/keys/verify" > "$WORK/$name.$i.out" &
    pids+=($!); i=$((i + 1))
  done
  wait "${pids[@]}"
}
summary() { # name -> "requests/s (sum) p99 (worst) requests (sum)"
  python3 - "$WORK" "$1" <<'PY'
import re, sys
work, name = sys.argv[1], sys.argv[2]
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = p99 = reqs = 0
for i in range(3):
    out = open(f"{work}/{name}.{i}.out").read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = max(p99, ms(re.search(r"99%\s+(\S+)", out).group(1)))
    reqs += int(re.search(r"(\d+) requests in", out).group(1))
print(f"{rps:.0f} {p99:.2f}ms {reqs}")
PY
}

curl -fs "${URLS[0]}/v1/keys/verify" -d "{\"key\":\"$LIMITED\"}" | grep -q '"credits"'
sleep 2; before="$(commits)"
load unlimited "$UNLIMITED" 16 16 16 "$WORK/post.lua"
sleep 2; mid="$(commits)"
load limited "$LIMITED" 16 16 16 "$WORK/post.lua"
sleep 2; after="$(commits)"
read -r u_rps u_p99 u_reqs <<<"$(summary unlimited)"
read -r l_rps l_p99 l_reqs <<<"$(summary limited)"

printf '\nlatchkey limits across 3 replicas on PostgreSQL: %s per case, %s cores\n\n' "$DURATION" "$(nproc)"
printf '%-44s %12s %10s %26s\n' case requests/s p99 "transactions / 1,000 req"
printf '%-44s %12s %10s %26s\n' "unlimited key, round robin" "$u_rps" "$u_p99" \
  "$(python3 -c "print(f'{($mid - $before) * 1000 / $u_reqs:.2f}')")"
printf '%-44s %12s %10s %26s\n' "2 rate limits + credits, round robin" "$l_rps" "$l_p99" \
  "$(python3 -c "print(f'{($after - $mid) * 1000 / $l_reqs:.2f}')")"

for traffic in "round-robin 16 16 16" "skewed 32 2 2 1"; do
  read -r name a b c pace <<<"$traffic"
  load "accuracy-$name" "$ACCURACY" "$a" "$b" "$c" "$WORK/count.lua" "$ACCURACY_DURATION" "${pace:-}"
  python3 - "$WORK" "accuracy-$name" "$LIMIT" <<'PY'
import sys
work, name, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
total = {}
for i in range(3):
    for line in open(f"{work}/{name}.{i}.counts"):
        w, n = map(int, line.split())
        total[w] = total.get(w, 0) + n
full = sorted(total)[1:-1]  # the first and last windows are partial
admitted = [total[w] for w in full]
import re
sent = [int(re.search(r"(\d+) requests in", open(f"{work}/{name}.{i}.out").read()).group(1)) for i in range(3)]
share = "/".join(f"{100 * n / sum(sent):.0f}" for n in sent)
low, high = 0.9 * limit, 1.1 * limit + 3
ok = all(low <= a <= high for a in admitted)
print(f"accuracy, {name.split('-', 1)[1]} (requests {share} % per replica, {sum(sent)} in all): limit {limit} per 10 s window; admitted per full window {admitted} "
      f"({min(admitted) / limit:.3f}..{max(admitted) / limit:.3f} of L): {'within' if ok else 'OUTSIDE'} 0.9 L..1.1 L + 3")
PY
done
