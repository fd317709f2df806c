//! The web UI's pages: Leptos components rendered on the server to HTML strings. This
//! crate only draws — it knows no database, no HTTP and no permission rule. The control
//! plane's `ui` module authenticates the request, calls the same service layer as the
//! REST API, turns the answers into the plain view models defined here and serves what
//! [`render`] returns. (Why views and handlers live apart: `docs/architecture.md`, "The
//! web UI".)
//!
//! Every page works as plain HTML forms without JavaScript; `assets/app.js` only adds
//! copy-to-clipboard and confirmation prompts. Inline `style` attributes are never used
//! (the CSP has no `unsafe-inline`): looks come from `assets/app.css`.

pub mod assets;
pub mod chart;
pub mod form;
pub mod layout;
pub mod pages;

use leptos::prelude::*;

pub use chart::Bar;
pub use form::{Field, Form, Input, Submitted};
pub use layout::{Flash, Nav, Shell};
pub use pages::{Block, Cell, Filters, Table};

/// A page rendered to a full HTML document.
pub fn render(shell: Shell, body: Vec<pages::Block>) -> String {
    let owner = Owner::new();
    let html = owner.with(|| layout::document(shell, pages::blocks(body)).to_html());
    format!("<!doctype html>{html}")
}
