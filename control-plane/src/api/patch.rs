//! PATCH bodies: a field that is absent keeps its value. A nullable field is an
//! `Option<Option<T>>` read with [`nullable`]: absent = `None` (keep), `null` =
//! `Some(None)` (clear), a value = `Some(Some(v))`.

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

/// `#[serde(default, deserialize_with = "nullable")]`: tells `null` from absent.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// [`nullable`] for an RFC 3339 timestamp.
pub fn nullable_rfc3339<'de, D>(deserializer: D) -> Result<Option<Option<OffsetDateTime>>, D::Error>
where
    D: Deserializer<'de>,
{
    time::serde::rfc3339::option::deserialize(deserializer).map(Some)
}
