//! The web UI (coming with the web-UI issue) will own the Leptos components rendered on
//! the server for the admin dashboard and the team self-service key portal, exported as
//! routes the control plane mounts at `/`.
//!
//! Pages work as plain HTML forms (no wasm toolchain exists here); at most small
//! progressive-enhancement scripts. It holds no SQL: data comes from the control plane's
//! service layer.
