#!/usr/bin/env bash
# HTTP load benchmark of key verification (one command; see README).
#
# Builds release, starts `latchkey serve` on a fresh SQLite database with a
# tenant and a key, and drives it with wrk (64 connections, 10 s a case):
#   /healthz (the HTTP stack's ceiling), /v1/keys/verify with a valid cached
#   key, a malformed key, a wrong secret for a real lookup id, the valid key
#   while a wrong-secret flood runs alongside, GraphQL `viewer` with a key, and
#   forward auth (`GET /v1/auth`, as nginx/Traefik/Envoy call it) with the
#   cached key and with a wrong one, and a key with two rate limits and
#   credits (verify and forward auth).
# Two floods run alongside the cached valid key (32 + 32 connections), with
# the server's peak RSS: guesses at an imported argon2id key (`prefix.<n>`,
# every guess different; the key is never used, so its hash is still
# argon2id), and anonymous GraphQL documents of about 1 MB.
# Then the cold case: BENCH_COLD_KEYS distinct keys (default 100,000), the
# server restarted so nothing is cached, each key verified at most once
# (BENCH_COLD_DURATION, default 2 s, 32 connections); and the server's RSS
# after it. BENCH_DATABASE_URL=postgres://... runs everything on PostgreSQL.
# Prints requests/s, p50 and p99 per case, and cached verify / healthz.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"

# BENCH_BIN=path runs another build (e.g. the previous commit's) through the same cases.
source scripts/bench-common.sh
WORK="$(mktemp -d)"
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; wait "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

export LATCHKEY_DATABASE_URL="${BENCH_DATABASE_URL:-sqlite://$WORK/bench.db?mode=rwc}"
export LATCHKEY_JWT_SECRET="bench-secret-bench-secret-bench-secret-0"
export LATCHKEY_MAIL_DIR="$WORK/mail"
export RUST_LOG=warn
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

TENANT="$("$BIN" tenant create --name Bench | jq -r .id)"
ADMIN="$("$BIN" user create --tenant "$TENANT" --email admin@bench.example --name Admin --role internal-admin | jq -r .id)"
BOT="$("$BIN" user create --tenant "$TENANT" --email bot@bench.example --name Bot --role integration-user | jq -r .id)"
TOKEN="$("$BIN" token --user "$ADMIN" --ttl-secs 3600)"
# An imported key stored as argon2id (OWASP parameters), found by its prefix
# `benchimp` (its secret, for reference: benchimp.0123456789abcdefghijklmnopqrst).
printf '%s\n' '{"ownerEmail":"bot@bench.example","description":"imported","createdAt":"2024-01-01T00:00:00Z","prefix":"benchimp","hash":"$argon2id$v=19$m=19456,t=2,p=1$jJnuSXmnIPMTtu1tHNKdbw$0fhmNQgJDYgsUWibHCjQgfey/YTahpSg6Jhv8Tije/A"}' > "$WORK/import.jsonl"
"$BIN" keys import --tenant "$TENANT" "$WORK/import.jsonl" | jq -e '.imported == 1' >/dev/null

start_server() {
  LATCHKEY_BIND="127.0.0.1:$PORT" "$BIN" serve 2>>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
start_server

SECRET="$(curl -fs "$URL/graphql" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"query\":\"mutation { generateApiKey(input: {ownerId: \\\"$BOT\\\", description: \\\"bench\\\"}) { secret } }\"}" \
  | jq -r .data.generateApiKey.secret)"
# A well-formed key with the real lookup id and a wrong secret (valid checksum).
WRONG="$(python3 - "$SECRET" <<'PY'
import sys, zlib
alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
body = sys.argv[1][:15] + "Z" * 34
n = zlib.crc32(body.encode()); digits = []
for _ in range(6):
    digits.append(alphabet[n % 62]); n //= 62
print(body + "".join(reversed(digits)))
PY
)"
MALFORMED="lk_thisisnotakey"

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
if os.getenv("AUTH") then wrk.headers["Authorization"] = os.getenv("AUTH") end
LUA

# The valid key is verified once so it is cached.
curl -fs "$URL/v1/keys/verify" -d "{\"key\":\"$SECRET\"}" | grep -q '"valid":true'
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SECRET" "$URL/v1/auth")" = 200 ]

cat > "$WORK/get.lua" <<'LUA'
wrk.headers["Authorization"] = os.getenv("AUTH")
wrk.headers["X-Forwarded-For"] = "203.0.113.7"
wrk.headers["X-Latchkey-Cloud"] = "EMPLOYEE"
LUA

run() { # name, url, [body], [auth]
  local name="$1" url="$2"
  BODY="${3:-}" AUTH="${4:-}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency ${3:+-s "$WORK/post.lua"} "$url" > "$WORK/$name.out"
}
run_get() { # name, url, auth: a GET with a gateway's headers
  AUTH="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/get.lua" "$2" > "$WORK/$1.out"
}

summary() { # name -> "rps p50 p99"
  local f="$WORK/$1.out"
  local rps p50 p99
  rps="$(awk '/Requests\/sec/ {print $2}' "$f")"
  p50="$(awk '$1=="50%" {print $2}' "$f")"
  p99="$(awk '$1=="99%" {print $2}' "$f")"
  echo "$rps $p50 $p99"
}

run healthz "$URL/healthz"
run verify_cached "$URL/v1/keys/verify" "{\"key\":\"$SECRET\"}"
run verify_malformed "$URL/v1/keys/verify" "{\"key\":\"$MALFORMED\"}"
run verify_wrong "$URL/v1/keys/verify" "{\"key\":\"$WRONG\"}"
# A key with two rate limits and credits, none of them reached here: the
# hot path of a limited key (leases of 250,000 and 25,000,000 units and of
# 1,000 credits at a time).
LIMITED="$(curl -fs "$URL/graphql" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"query\":\"mutation { generateApiKey(input: {ownerId: \\\"$BOT\\\", description: \\\"limited\\\", rateLimits: [{name: \\\"minute\\\", limit: 10000000, periodSeconds: 60}, {name: \\\"day\\\", limit: 1000000000, periodSeconds: 86400}], credits: {remaining: 1000000000}}) { secret } }\"}" \
  | jq -r .data.generateApiKey.secret)"
curl -fs "$URL/v1/keys/verify" -d "{\"key\":\"$LIMITED\"}" | grep -q '"credits"'
run verify_limited "$URL/v1/keys/verify" "{\"key\":\"$LIMITED\"}"
run_get forward_auth_limited "$URL/v1/auth" "Bearer $LIMITED"
# Valid cached traffic while a wrong-secret flood runs alongside (32 + 32 connections).
BODY="{\"key\":\"$WRONG\"}" wrk -t1 -c$((CONNECTIONS / 2)) -d"$DURATION" -s "$WORK/post.lua" "$URL/v1/keys/verify" > "$WORK/flood.out" &
FLOOD=$!
BODY="{\"key\":\"$SECRET\"}" wrk -t1 -c$((CONNECTIONS / 2)) -d"$DURATION" --latency -s "$WORK/post.lua" "$URL/v1/keys/verify" > "$WORK/verify_under_flood.out"
wait "$FLOOD"

peak_rss() { # samples the server's RSS until the file $1 appears; prints the peak (KiB)
  local peak=0 rss
  while [ ! -e "$1" ]; do
    rss="$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')"; [ "${rss:-0}" -gt "$peak" ] && peak="$rss"; sleep 0.2
  done
  echo "$peak"
}
under_flood() { # name, flood script: the cached valid key while the flood runs alongside
  local name="$1" script="$2"
  peak_rss "$WORK/$name.done" > "$WORK/$name.rss" &
  local sampler=$!
  wrk -t1 -c$((CONNECTIONS / 2)) -d"$DURATION" -s "$script" "$URL" > "$WORK/$name.flood.out" &
  local flood=$!
  BODY="{\"key\":\"$SECRET\"}" wrk -t1 -c$((CONNECTIONS / 2)) -d"$DURATION" --latency -s "$WORK/post.lua" "$URL/v1/keys/verify" > "$WORK/$name.out"
  wait "$flood"; touch "$WORK/$name.done"; wait "$sampler"
}
cat > "$WORK/guesses.lua" <<'LUA'
-- Every guess at the imported key's prefix is a different string.
local n = 0
wrk.method = "POST"
wrk.path = "/v1/keys/verify"
wrk.headers["Content-Type"] = "application/json"
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"key":"benchimp.guess%026d"}', n))
end
LUA
python3 -c "import json; print(json.dumps({'query': '{ ' + '__typename ' * 92000 + '}'}))" > "$WORK/large_document.json"
cat > "$WORK/large_documents.lua" <<LUA
local f = io.open("$WORK/large_document.json"); local body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.path = "/graphql"
wrk.headers["Content-Type"] = "application/json"
wrk.body = body
LUA
under_flood verify_under_argon2_guesses "$WORK/guesses.lua"
under_flood verify_under_large_documents "$WORK/large_documents.lua"
run_get forward_auth_cached "$URL/v1/auth" "Bearer $SECRET"
run_get forward_auth_wrong "$URL/v1/auth" "Bearer $WRONG"
run graphql_viewer "$URL/graphql" '{"query":"{ viewer { tenant { id } apiKey { id } clouds } }"}' "Bearer $SECRET"

WRONG_CODE="$(curl -fs "$URL/v1/keys/verify" -d "{\"key\":\"$WRONG\"}" | jq -r .code)"

# The cold case: many distinct keys, each verified at most once, after a restart.
COLD_KEYS="${BENCH_COLD_KEYS:-100000}"
COLD_DURATION="${BENCH_COLD_DURATION:-2s}"
python3 - "$URL" "$TOKEN" "$BOT" "$COLD_KEYS" "$WORK/cold_keys.txt" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, token, owner, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
q = 'mutation($o:ID!,$d:String!){generateApiKey(input:{ownerId:$o,description:$d}){secret}}'
def gen(i):
    req = urllib.request.Request(f"{url}/graphql", method="POST",
        data=json.dumps({"query": q, "variables": {"o": owner, "d": f"cold {i}"}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))["data"]["generateApiKey"]["secret"]
with ThreadPoolExecutor(16) as ex:
    keys = list(ex.map(gen, range(n), chunksize=64))
open(out, "w").write("\n".join(keys) + "\n")
PY
stop_server
start_server   # restarted: nothing is cached
RSS_BEFORE="$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')"
KEYS_FILE="$WORK/cold_keys.txt" THREADS="$THREADS" wrk -t"$THREADS" -c32 -d"$COLD_DURATION" --latency -s scripts/cold-keys.lua \
  "$URL/v1/keys/verify" > "$WORK/verify_cold.out"
RSS_AFTER="$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')"
COLD_REQUESTS="$(awk '/requests in/ {print $1}' "$WORK/verify_cold.out")"
COLD_NON2XX="$(awk '/Non-2xx/ {print $NF}' "$WORK/verify_cold.out")"
VALID_SAMPLE="$(curl -fs "$URL/v1/keys/verify" -d "{\"key\":\"$(sed -n 7p "$WORK/cold_keys.txt")\"}" | jq -r .valid)"

printf '\nlatchkey verification benchmark: %s connections, %s per case, %s cores\n\n' "$CONNECTIONS" "$DURATION" "$(nproc)"
printf '%-34s %12s %10s %10s\n' case requests/s p50 p99
for c in healthz verify_cached verify_limited forward_auth_limited verify_malformed verify_wrong verify_under_flood verify_under_argon2_guesses \
  verify_under_large_documents forward_auth_cached forward_auth_wrong graphql_viewer verify_cold; do
  read -r rps p50 p99 <<<"$(summary "$c")"
  printf '%-34s %12s %10s %10s\n' "$c" "$rps" "$p50" "$p99"
done
read -r flood_rps _ <<<"$(awk '/Requests\/sec/ {print $2}' "$WORK/flood.out") x"
printf '%-34s %12s\n' "(wrong-secret flood alongside)" "$flood_rps"
for c in verify_under_argon2_guesses verify_under_large_documents; do
  printf '%-34s %12s  (server peak RSS %s KiB)\n' "($c: flood)" "$(awk '/Requests\/sec/ {print $2}' "$WORK/$c.flood.out")" "$(cat "$WORK/$c.rss")"
done
read -r h _ _ <<<"$(summary healthz)"
read -r v _ _ <<<"$(summary verify_cached)"
read -r f _ _ <<<"$(summary forward_auth_cached)"
read -r l _ _ <<<"$(summary verify_limited)"
python3 -c "print(f'\ncached verify / healthz throughput: {float(\"$v\")/float(\"$h\"):.2f}')"
python3 -c "print(f'forward auth (cached key) / healthz throughput: {float(\"$f\")/float(\"$h\"):.2f}')"
python3 -c "print(f'limited key (2 rate limits + credits) / healthz throughput: {float(\"$l\")/float(\"$h\"):.2f}')"
echo "wrong-secret answers settle on: $WRONG_CODE (the failing presenter is limited; correct keys never are)"
printf 'cold: %s requests over %s distinct keys (%s), non-2xx: %s, a key verified after the run is valid: %s\n' \
  "$COLD_REQUESTS" "$COLD_KEYS" "$( [ "${COLD_REQUESTS:-0}" -le "$COLD_KEYS" ] && echo 'none repeated: all cold' || echo 'SOME REPEATED: raise BENCH_COLD_KEYS')" \
  "${COLD_NON2XX:-0}" "$VALID_SAMPLE"
printf 'server RSS: %s KiB after restart, %s KiB after verifying %s distinct keys\n' "$RSS_BEFORE" "$RSS_AFTER" "$(( COLD_REQUESTS < COLD_KEYS ? COLD_REQUESTS : COLD_KEYS ))"
