# Thin recipes over the commands the README shows.

# Serve on the embedded SQLite default (needs LATCHKEY_JWT_SECRET).
run:
    cargo run --release -p latchkey-server -- serve

# Fresh demo database, demo tenant, prints URL and token, serves.
demo:
    cargo run --release -p latchkey-server -- demo

# The test suite (SQLite and PostgreSQL).
test:
    cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate schema.graphql from the code.
schema:
    cargo run -q -p latchkey-server -- schema > schema.graphql

# Everything CI runs.
ci:
    bash .ci/run

# Benchmarks: key verification under HTTP load (wrk), in process (criterion), key table, mail, usage, limits, webhooks.
bench:
    bash scripts/bench-verify.sh
    cargo bench -p latchkey-app --bench verify
    cargo bench -p latchkey-app --bench sign_in
    cargo bench -p latchkey-tests --bench keys
    cargo bench -p latchkey-tests --bench mail
    cargo bench -p latchkey-tests --bench usage
    bash scripts/bench-limits.sh
    cargo bench -p latchkey-tests --bench webhooks
    bash scripts/bench-client.sh
    cargo bench -p latchkey-tests --bench client
