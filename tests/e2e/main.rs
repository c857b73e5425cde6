//! End-to-end tests: the real server on port 0 over HTTP, and the CLI.
//! Every suite runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

/// Runs each listed `async fn name(fixture)` once on SQLite and once on
/// PostgreSQL, the fixture (a started `TestApp`, a fresh `TestDb`, or just the
/// `Backend`) made fresh for each run by `latchkey_tests::Fixture`. PostgreSQL
/// runs are skipped loudly, or failed with LATCHKEY_REQUIRE_POSTGRES=1, when
/// it is unreachable.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    latchkey_tests::run_on(latchkey_tests::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    latchkey_tests::run_on(latchkey_tests::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

mod audit;
mod auth;
mod cli;
mod client;
mod concurrency;
mod console;
mod cors;
mod gateway;
mod graphiql;
mod hardening;
mod http;
mod import;
mod key_lifecycle;
mod key_policy;
mod key_states;
mod key_table;
mod leaks;
mod limits;
mod mail;
mod metrics;
mod oidc;
mod openapi;
mod owners;
mod replicas;
mod restrictions;
mod scim;
mod secret_scanning;
mod secrets;
mod self_rotation;
mod store;
mod tenancy;
mod topology;
mod usage;
mod verification_stream;
mod verify;
mod webhooks;
