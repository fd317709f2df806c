//! The request pipeline, one module per step, in the order a call goes through them:
//! [`request`] (parse the body) → [`authenticate`] → [`authorize`] → [`limit`] →
//! [`reserve`] → [`route`] → [`forward`] → [`settle`] → [`emit`].
//!
//! Each step is a free function taking the pinned snapshot and only what it needs, and
//! returns the typed value the next step consumes. Steps before `reserve` have nothing
//! to undo. From the start of a call a [`settle::CallGuard`] owns what must happen at its
//! end (settle the reservation, release the limiter slots, emit one usage event), and
//! does it when dropped — on success, on error, and when the client hangs up.

pub mod authenticate;
pub mod authorize;
pub mod emit;
pub mod forward;
pub mod limit;
pub mod request;
pub mod reserve;
pub mod route;
pub mod settle;
