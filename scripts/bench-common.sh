# Shared by the benchmark scripts: wrk installed, the release binary built
# (BENCH_BIN=path runs another build, e.g. the previous commit's), BIN set.
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q -p latchkey-server; fi
BIN="${BENCH_BIN:-$PWD/target/release/latchkey}"
