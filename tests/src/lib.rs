//! Test support for Tollgate's cross-process tests, and the mock upstream.
//!
//! - [`mock`]: an OpenAI- and Anthropic-compatible server whose behaviour (latency,
//!   chunking, injected errors, broken streams, hangs) each request chooses, and which
//!   records what it received. Runs in-process on `127.0.0.1:0` or as the `mock-openai`
//!   binary for benchmarks. It is the only fake in the test suite: no machine here
//!   reaches a real provider.
//! - [`env`]: per-test isolation on the real local services — a fresh Postgres database
//!   and a Redis key prefix per test, both removed afterwards, even when the test panics.
//!
//! - [`oidc`]: a real OpenID provider (npm `oidc-provider`) behind a rewriting proxy,
//!   and a cookie-keeping client that drives sign-ins over HTTP.
//! - [`browser`]: a real headless Chromium (Debian's, through chromedriver) for the web
//!   UI's tests: sign-in through the real provider's form, label-based form helpers,
//!   polling waits, screenshots and an axe-core accessibility check.
//!
//! Nothing here may depend on fixed ports or on tests running one at a time.

pub mod browser;
pub mod control;
pub mod env;
pub mod gateway;
pub mod mock;
pub mod oidc;
