//! Latchkey's HTTP server and the `latchkey` command line: configuration,
//! actix wiring, and the operator commands.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
mod forward_auth;
pub mod github;
mod graphiql;
mod http;
pub mod import;
pub mod oidc;
pub mod openapi;
mod scim;

pub use app::{RunningServer, start};
pub use config::{ConfigError, ServeConfig};
