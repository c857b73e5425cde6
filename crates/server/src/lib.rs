//! Latchkey's HTTP server and the `latchkey` command line.
//!
//! Modules, each importing only those below it (no import circle):
//! * `answers`: the shared vocabulary of REST answers (errors, client
//!   address, clouds); imports no other module.
//! * `context`: what handlers share.
//! * front ends: `graphql_http`, `console` (the API keys page), `graphiql`,
//!   `verify` (REST verification and leak reports), `forward_auth`,
//!   `secret_scanning`, `scim`, `probes` (health, readiness, metrics), and
//!   `openapi` (the document, from the front ends' annotations).
//! * `middleware`, `router` (routes only), `wiring` (starting everything).
//! * `config`, `oidc` (the identity provider over HTTP), `github`, `demo`,
//!   `cli` (the commands: parse, then dispatch).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

mod answers;
pub mod cli;
pub mod config;
mod console;
mod context;
pub mod demo;
mod forward_auth;
pub mod github;
mod graphiql;
mod graphql_http;
mod middleware;
pub mod oidc;
pub mod openapi;
mod probes;
mod router;
mod scim;
mod secret_scanning;
mod self_rotation;
mod verification_stream;
mod verify;
pub mod wiring;

pub use config::{ConfigError, ServeConfig};
pub use wiring::{RunningServer, start};
