//! A deployment's upstream URLs, parsed once. Parsing `base_url + path` on every call
//! (with the host's IDNA check) showed in the per-call profile; a deployment only ever
//! calls a handful of paths, so each is parsed the first time and cloned after.

use std::sync::{PoisonError, RwLock};

use reqwest::Url;

/// Paths kept per deployment: more than any adapter uses, so the list stays short.
const MAX_PATHS: usize = 16;

#[derive(Debug, Default)]
pub struct UpstreamUrls {
    parsed: RwLock<Vec<(String, Url)>>,
}

impl UpstreamUrls {
    /// `base` + `path`, parsed; `None` when that is not a URL (the caller then lets the
    /// HTTP client refuse the string, with its own error).
    pub fn get(&self, base: &str, path: &str) -> Option<Url> {
        let known = self
            .parsed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, url)| url.clone());
        if known.is_some() {
            return known;
        }
        let url = Url::parse(&format!("{base}{path}")).ok()?;
        let mut parsed = self.parsed.write().unwrap_or_else(PoisonError::into_inner);
        if parsed.len() < MAX_PATHS && !parsed.iter().any(|(p, _)| p == path) {
            parsed.push((path.to_owned(), url.clone()));
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_parsed_once_and_answered_the_same_after() {
        let urls = UpstreamUrls::default();
        let first = urls.get("https://api.example.com/v1", "/chat/completions");
        assert_eq!(
            first.as_ref().map(Url::as_str),
            Some("https://api.example.com/v1/chat/completions")
        );
        assert_eq!(
            urls.get("https://api.example.com/v1", "/chat/completions"),
            first
        );
        assert_eq!(urls.parsed.read().unwrap().len(), 1);
        assert_eq!(urls.get("not a url", "/x"), None);
        for i in 0..40 {
            assert!(urls.get("http://h", &format!("/p{i}")).is_some());
        }
        assert_eq!(urls.parsed.read().unwrap().len(), MAX_PATHS, "bounded");
    }
}
