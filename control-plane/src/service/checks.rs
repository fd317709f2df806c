//! Field checks every write shares (slugs, names, allow-lists, URLs, credential
//! references): they collect every failure, so one answer names every bad field.

use crate::service::problem::{FieldError, Problem};

#[derive(Debug, Default)]
pub struct Checks(pub(crate) Vec<FieldError>);

impl Checks {
    fn fail(mut self, field: &str, message: impl Into<String>) -> Self {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn slug(self, field: &str, value: &str) -> Self {
        let ok = !value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-');
        if ok {
            self
        } else {
            self.fail(
                field,
                "1–63 lowercase letters, digits or '-', not starting with '-'",
            )
        }
    }

    pub fn name(self, field: &str, value: &str) -> Self {
        if value.trim().is_empty() || value.chars().count() > 200 || value.contains('\0') {
            self.fail(field, "1–200 characters, not only spaces, no NUL")
        } else {
            self
        }
    }

    /// Text Postgres can store: no NUL characters.
    pub fn text(self, field: &str, value: &str) -> Self {
        if value.contains('\0') {
            self.fail(field, "must not contain NUL characters")
        } else {
            self
        }
    }

    /// Model names of an allow-list: 1–200 characters each, no NUL.
    pub fn models(self, field: &str, values: &[String]) -> Self {
        let bad = |m: &String| m.is_empty() || m.contains('\0') || m.chars().count() > 200;
        if values.iter().any(bad) {
            self.fail(field, "model names of 1–200 characters, without NUL")
        } else {
            self
        }
    }

    /// Free text of at most 200 characters, possibly empty, without NUL.
    pub fn short_text(self, field: &str, value: &str) -> Self {
        if value.chars().count() > 200 || value.contains('\0') {
            self.fail(field, "at most 200 characters, without NUL")
        } else {
            self
        }
    }

    /// No entry twice.
    pub fn distinct(self, field: &str, values: &[String]) -> Self {
        let mut seen = std::collections::HashSet::new();
        if values.iter().all(|v| seen.insert(v)) {
            self
        } else {
            self.fail(field, "each entry at most once")
        }
    }

    /// An absolute `http://` or `https://` URL with a host.
    pub fn http_url(self, field: &str, value: &str) -> Self {
        let ok = (value.starts_with("http://") || value.starts_with("https://"))
            && value.len() <= 2048
            && !value.contains(|c: char| c.is_whitespace() || c.is_control())
            && value
                .parse::<http::Uri>()
                .is_ok_and(|uri| uri.host().is_some_and(|h| !h.is_empty()));
        if ok {
            self
        } else {
            self.fail(field, "an http:// or https:// URL with a host")
        }
    }

    /// A provider's API root: an `http_url` that is a clean origin + path, with no
    /// query, no fragment and no `user:password@` (gateways append paths to it and send
    /// it a credential, so nothing may ride along in the URL itself).
    pub fn base_url(self, field: &str, value: &str) -> Self {
        let checked = self.http_url(field, value);
        let authority = value
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if value.contains(['?', '#']) || authority.contains('@') {
            checked.fail(
                field,
                "an origin and path only, e.g. https://api.openai.com/v1 (no query, no fragment, no user:password@)",
            )
        } else {
            checked
        }
    }

    /// `env:NAME` or `file:PATH`: where gateways find a provider secret. The secret
    /// itself is refused, whatever it looks like: Tollgate references provider secrets,
    /// it does not store them. Which variables and directories a gateway actually lets a
    /// reference read is its own setting (`[credentials]`); the gateway's own settings
    /// (`TOLLGATE_*` other than `TOLLGATE_PROVIDER_*`) are refused here already.
    pub fn credential_ref(self, field: &str, value: &str) -> Self {
        let name_ok = |name: &str| {
            let mut bytes = name.bytes();
            bytes
                .next()
                .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
                && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && name.len() <= 255
        };
        let own_setting =
            |name: &str| name.starts_with("TOLLGATE_") && !name.starts_with("TOLLGATE_PROVIDER_");
        let path_ok = |path: &str| {
            !path.is_empty()
                && path.len() <= 1024
                && !path.contains(|c: char| c.is_control())
                && !path.split('/').any(|part| part == "..")
        };
        let ok = match (value.strip_prefix("env:"), value.strip_prefix("file:")) {
            (Some(name), _) => name_ok(name) && !own_setting(name),
            (_, Some(path)) => path_ok(path),
            _ => false,
        };
        if ok {
            self
        } else {
            self.fail(
                field,
                "a reference env:NAME (NAME of A-Z, 0-9 and _, e.g. env:OPENAI_API_KEY; not one of \
                 the gateway's own TOLLGATE_ settings) or file:PATH (no ..); provider secrets are \
                 referenced, not stored",
            )
        }
    }

    /// `value >= min` (when set).
    pub fn at_least(self, field: &str, value: Option<impl Into<i64>>, min: i64) -> Self {
        match value.map(Into::into) {
            Some(v) if v < min => self.fail(field, format!("must be at least {min}")),
            _ => self,
        }
    }

    /// A failure the caller decided on.
    pub fn check(self, ok: bool, field: &str, message: &str) -> Self {
        if ok { self } else { self.fail(field, message) }
    }

    pub fn one_of(self, field: &str, value: &str, allowed: &[&str]) -> Self {
        if allowed.contains(&value) {
            self
        } else {
            self.fail(field, format!("one of {}", allowed.join(", ")))
        }
    }

    pub fn email(self, field: &str, value: &str) -> Self {
        let shaped = value
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
        if shaped && value.len() <= 254 && !value.contains(|c: char| c.is_whitespace() || c == '\0')
        {
            self
        } else {
            self.fail(field, "a valid email address")
        }
    }

    pub fn done(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Problem::invalid(self.0))
        }
    }
}
