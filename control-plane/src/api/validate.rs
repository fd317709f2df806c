//! Field checks that answer with every problem at once (422), before the database sees
//! the request. The database constraints stay as the last line of defence.

use super::error::{ApiError, FieldError};

#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn slug(mut self, field: &str, value: &str) -> Self {
        let ok = !value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-');
        if !ok {
            self.0.push(FieldError {
                field: field.into(),
                message: "1–63 lowercase letters, digits or '-', not starting with '-'".into(),
            });
        }
        self
    }

    pub fn name(mut self, field: &str, value: &str) -> Self {
        if value.trim().is_empty() || value.chars().count() > 200 {
            self.0.push(FieldError {
                field: field.into(),
                message: "1–200 characters".into(),
            });
        }
        self
    }

    pub fn one_of(mut self, field: &str, value: &str, allowed: &[&str]) -> Self {
        if !allowed.contains(&value) {
            self.0.push(FieldError {
                field: field.into(),
                message: format!("one of {}", allowed.join(", ")),
            });
        }
        self
    }

    pub fn email(mut self, field: &str, value: &str) -> Self {
        let ok = value.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !value.contains(char::is_whitespace)
        });
        if !ok {
            self.0.push(FieldError {
                field: field.into(),
                message: "a valid email address".into(),
            });
        }
        self
    }

    pub fn done(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }
}
