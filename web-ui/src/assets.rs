//! The stylesheet and the one script, embedded in the binary (no CDN, nothing fetched at
//! run time). Their URLs carry a content hash so browsers may cache them for good.

pub const CSS: &str = include_str!("../assets/app.css");
pub const JS: &str = include_str!("../assets/app.js");

/// `/ui/assets/app.<hash>.css`: a new build with another stylesheet gets another URL.
pub fn css_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| format!("/ui/assets/app.{:08x}.css", fnv(CSS)))
}

pub fn js_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| format!("/ui/assets/app.{:08x}.js", fnv(JS)))
}

/// FNV-1a: a stable content tag, not a security property.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
