#!/usr/bin/env bash
# What verifying in process costs a service: the latchkey-client example
# service (axum, the client's tower layer) driven by wrk on the same route
# with and without the layer, alternately, in the same run.
#
# Builds release, starts `latchkey serve` on a fresh SQLite database with a
# tenant, a stream key (`verify:stream`) and a key, and the example service
# reading the stream. Then, BENCH_ROUNDS times (default 3), BENCH_DURATION
# (10 s) each: `GET /public/whoami` (no key) and `GET /whoami` (Bearer key,
# verified from the cache). Prints requests/s and p50/p99 per round, the
# medians, and their ratio; the service's counters prove the cache answered.
# The in-process numbers (criterion) and the revocation latency are
# `cargo bench -p latchkey-tests --bench client`.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
ROUNDS="${BENCH_ROUNDS:-3}"

source scripts/bench-common.sh
cargo build --release -q -p latchkey-client --example verify_service
SERVICE_BIN="$PWD/target/release/examples/verify_service"
WORK="$(mktemp -d)"
trap 'kill ${SERVER_PID:-} ${SERVICE_PID:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

export LATCHKEY_DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc"
export LATCHKEY_JWT_SECRET="bench-secret-bench-secret-bench-secret-0"
export LATCHKEY_MAIL_DIR="$WORK/mail"
export RUST_LOG=warn
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"

TENANT="$("$BIN" tenant create --name Bench | jq -r .id)"
ADMIN="$("$BIN" user create --tenant "$TENANT" --email admin@bench.example --name Admin --role internal-admin | jq -r .id)"
BOT="$("$BIN" user create --tenant "$TENANT" --email bot@bench.example --name Bot --role integration-user | jq -r .id)"
TOKEN="$("$BIN" token --user "$ADMIN" --ttl-secs 3600)"
LATCHKEY_BIND="127.0.0.1:$PORT" "$BIN" serve 2>>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done

generate() { # permissions (JSON list) -> secret
  curl -fs "$URL/graphql" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"query\":\"mutation(\$p: [String!]) { generateApiKey(input: {ownerId: \\\"$BOT\\\", description: \\\"bench\\\", restrictions: {permissions: \$p}}) { secret } }\",\"variables\":{\"p\":$1}}" \
    | jq -r .data.generateApiKey.secret
}
STREAM_KEY="$(generate '["verify:stream"]')"
KEY="$(generate '["users:read"]')"

SERVICE_PORT="$(free_port)"
SERVICE="http://127.0.0.1:$SERVICE_PORT"
LATCHKEY_URL="$URL" LATCHKEY_STREAM_KEY="$STREAM_KEY" BIND="127.0.0.1:$SERVICE_PORT" "$SERVICE_BIN" > "$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do curl -fs "$SERVICE/stats" | jq -e .trusted >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$SERVICE/whoami")" = 200 ]
BEFORE="$(curl -fs "$SERVICE/stats")"

cat > "$WORK/auth.lua" <<'LUA'
wrk.headers["Authorization"] = os.getenv("AUTH")
LUA
summary() { # file -> "rps p50 p99"
  echo "$(awk '/Requests\/sec/ {print $2}' "$1") $(awk '$1=="50%" {print $2}' "$1") $(awk '$1=="99%" {print $2}' "$1")"
}
for round in $(seq 1 "$ROUNDS"); do
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$SERVICE/public/whoami" > "$WORK/open.$round.out"
  AUTH="Bearer $KEY" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/auth.lua" "$SERVICE/whoami" > "$WORK/layer.$round.out"
  grep -q "Non-2xx" "$WORK/layer.$round.out" && { echo "refused requests with the layer" >&2; cat "$WORK/layer.$round.out" >&2; exit 1; }
  printf 'round %s  without auth: %s req/s (p50 %s, p99 %s)   with the layer: %s req/s (p50 %s, p99 %s)\n' "$round" \
    $(summary "$WORK/open.$round.out") $(summary "$WORK/layer.$round.out")
done
AFTER="$(curl -fs "$SERVICE/stats")"
python3 - "$WORK" "$ROUNDS" "$BEFORE" "$AFTER" <<'PY'
import json, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
before, after = json.loads(sys.argv[3]), json.loads(sys.argv[4])
def rps(name):
    return [float(re.search(r"Requests/sec:\s+([\d.]+)", open(f"{work}/{name}.{r}.out").read()).group(1)) for r in range(1, rounds + 1)]
open_, layer = statistics.median(rps("open")), statistics.median(rps("layer"))
print(f"median without auth {open_:,.0f} req/s, with the layer {layer:,.0f} req/s: {layer / open_:.2f}x")
print(f"asked Latchkey during the runs: {after['asked'] - before['asked']}, cache hits: {after['cacheHits'] - before['cacheHits']:,}")
PY
