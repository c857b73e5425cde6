//! End-to-end tests: the real server on port 0 over HTTP, and the CLI.
//! Every suite runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Runs each listed `async fn name(app: TestApp)` once on SQLite and once on
/// PostgreSQL (skipped loudly, or failed with LATCHKEY_REQUIRE_POSTGRES=1,
/// when PostgreSQL is unreachable).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = latchkey_tests::TestApp::start(latchkey_tests::Backend::Sqlite).await.expect("sqlite");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = latchkey_tests::TestApp::start(latchkey_tests::Backend::Postgres).await else {
                        return;
                    };
                    super::$name(app).await;
                }
            )*
        }
    };
}

mod audit;
mod auth;
mod cli;
mod concurrency;
mod console;
mod http;
mod key_lifecycle;
mod key_table;
mod mail;
mod replicas;
mod secrets;
mod store;
mod tenancy;
mod verify;
