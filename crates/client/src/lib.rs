//! Verify [Latchkey](https://github.com/latchkey/latchkey) API keys inside
//! your own service, at memory speed, and still lose a revoked key within
//! a second.
//!
//! A [`Verifier`] asks Latchkey (`POST /v1/keys/verify`) the first time it
//! sees a key, caches the answer in process (keyed by an HMAC of the
//! secret, bounded, with a TTL as a backstop), and decides later requests
//! itself by Latchkey's rule (cloud, address, permissions). It follows
//! `GET /v1/verifications/stream` with a key allowed `verify:stream`:
//! a key rotated, deleted, disabled, suspended, restricted or reported
//! leaked is dropped from the cache as soon as Latchkey commits the change
//! (milliseconds); the stream resumes with `Last-Event-ID` after a
//! reconnection, so nothing is missed.
//!
//! - When the stream is down, cached answers are used for `stale_after`
//!   (5 s by default); then every verification asks Latchkey, and a
//!   Latchkey that cannot answer gets [`Error::Unavailable`] (503 from the
//!   layer): an unverifiable key is never accepted.
//! - A key with rate limits or credits is never answered from the cache:
//!   Latchkey counts each of its requests, so its limits hold exactly.
//! - Only keys of the stream key's tenant are cached (the stream carries
//!   no other tenant's revocations); other keys are asked every time.
//! - What the cache answers is reported to Latchkey every 10 s, so its
//!   usage and "last used" count every verification.
//!
//! ```no_run
//! use latchkey_client::{Cloud, RequestContext, Verification, Verifier};
//!
//! # async fn run() -> Result<(), latchkey_client::Error> {
//! let verifier = Verifier::builder("http://latchkey:8080", std::env::var("LATCHKEY_STREAM_KEY").unwrap_or_default())
//!     .cache_capacity(50_000)
//!     .build()?;
//! let context = RequestContext::new().cloud(Cloud::Customer).permissions(["users:read"]);
//! match verifier.verify("lk_…", &context).await? {
//!     Verification::Valid(key) => println!("key {} of tenant {}", key.key_id, key.tenant_id),
//!     Verification::Refused(refusal) => println!("refused: {}", refusal.code.as_str()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! For axum, tonic or hyper, wrap routes in a [`VerifyLayer`]; the
//! example `verify_service` is a whole axum service.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod clock;
mod context;
mod decide;
mod digest;
mod error;
mod layer;
mod report;
mod shared;
mod sse;
mod stream;
mod verification;
mod verifier;

pub use context::{Cloud, RequestContext};
pub use error::Error;
pub use layer::{ResponseFuture, VerifyLayer, VerifyService};
pub use verification::{LimitState, Refusal, RefusalCode, Verification, VerifiedKey};
pub use verifier::{Stats, Verifier, VerifierBuilder};
