#!/usr/bin/env bash
# Vendors GraphiQL and React into crates/server/assets/graphiql/, which the
# binary embeds and serves at /graphiql (no CDN: it works offline).
#
# To update: change a version below, run this script (it prints the new
# integrity when the pinned one no longer matches), pin the printed integrity,
# run `cargo test -p latchkey-tests --test e2e graphiql`, and commit the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

# package@version and the npm registry's sha512 integrity of its tarball.
PACKAGES=(
  "graphiql@3.8.3 sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw=="
  "react@18.3.1 sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ=="
  "react-dom@18.3.1 sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw=="
)
# package -> the files taken from it (paths inside the tarball's package/).
declare -A FILES=(
  [graphiql]="graphiql.min.js graphiql.min.css"
  [react]="umd/react.production.min.js"
  [react-dom]="umd/react-dom.production.min.js"
)

OUT=crates/server/assets/graphiql
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

for entry in "${PACKAGES[@]}"; do
  read -r spec integrity <<<"$entry"
  name="${spec%@*}"
  (cd "$WORK" && npm pack --silent "$spec" >/dev/null)
  tarball="$(ls "$WORK"/"$name"-*.tgz)"
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$actual" != "$integrity" ]; then
    echo "integrity of $spec is $actual, not the pinned $integrity" >&2
    exit 1
  fi
  mkdir -p "$WORK/$name"
  tar xzf "$tarball" -C "$WORK/$name"
  for file in ${FILES[$name]}; do
    cp "$WORK/$name/package/$file" "$OUT/$(basename "$file")"
  done
  cp "$WORK/$name/package/LICENSE" "$OUT/LICENSE.$name"
  echo "vendored $spec"
done
