//! The model catalog as the other services need it.

use super::{FieldError, Problem};
use crate::store::{Pool, models};

/// 422 on `field` unless every entry of an allow-list names a model or an alias of one.
pub async fn require_known(pool: &Pool, field: &str, names: &[String]) -> Result<(), Problem> {
    if names.is_empty() {
        return Ok(());
    }
    let unknown = models::unknown(pool, names).await?;
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Problem::invalid(vec![FieldError {
        field: field.into(),
        message: format!(
            "not a model name or alias of the catalog: {}",
            unknown.join(", ")
        ),
    }]))
}
