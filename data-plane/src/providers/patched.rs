//! A client's body as it goes upstream: the same fields with a few set or removed
//! (the model, the output cap, stream options), serialised straight from the client's
//! map. Cloning the map to edit it copied the whole prompt once per attempt; the bytes
//! written are the same either way (a `serde_json::Map` keeps its keys sorted, and the
//! changes are merged in that order).

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

pub struct PatchedBody<'a> {
    base: &'a Map<String, Value>,
    /// `None` removes the field.
    changes: BTreeMap<String, Option<Value>>,
}

impl<'a> PatchedBody<'a> {
    pub fn new(base: &'a Map<String, Value>) -> Self {
        Self {
            base,
            changes: BTreeMap::new(),
        }
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        match self.changes.get(field) {
            Some(change) => change.as_ref(),
            None => self.base.get(field),
        }
    }

    pub fn insert(&mut self, field: &str, value: Value) {
        self.changes.insert(field.to_owned(), Some(value));
    }

    pub fn remove(&mut self, field: &str) {
        if self.get(field).is_some() {
            self.changes.insert(field.to_owned(), None);
        }
    }
}

impl Serialize for PatchedBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut base = self.base.iter().peekable();
        let mut changes = self.changes.iter().peekable();
        loop {
            // Both sides are sorted by key: write the smaller, a change winning a tie.
            let take_base = match (base.peek(), changes.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((b, _)), Some((c, _))) => b.as_str() < c.as_str(),
            };
            if take_base {
                if let Some((field, value)) = base.next() {
                    map.serialize_entry(field, value)?;
                }
                continue;
            }
            if let Some((field, change)) = changes.next() {
                if base.peek().is_some_and(|(b, _)| *b == field) {
                    base.next();
                }
                if let Some(value) = change {
                    map.serialize_entry(field, value)?;
                }
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn edits_are_written_in_the_maps_own_order() {
        let Value::Object(base) = json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "model": "m", "stream": true})
        else {
            unreachable!()
        };
        let mut body = PatchedBody::new(&base);
        body.insert("model", json!("gpt-4o"));
        body.remove("max_tokens");
        body.insert("max_completion_tokens", json!(7));
        body.remove("absent");
        assert_eq!(body.get("max_tokens"), None);
        assert_eq!(body.get("model"), Some(&json!("gpt-4o")));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"max_completion_tokens":7,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o","stream":true}"#
        );
    }

    proptest! {
        #[test]
        fn the_bytes_are_those_of_the_edited_copy(
            base in prop::collection::btree_map("[a-e]{1,2}", any::<u8>(), 0..8),
            edits in prop::collection::vec(("[a-e]{1,2}", proptest::option::of(any::<u8>())), 0..8),
        ) {
            let base: Map<String, Value> = base.into_iter().map(|(k, v)| (k, v.into())).collect();
            let mut copy = base.clone();
            let mut body = PatchedBody::new(&base);
            for (field, edit) in edits {
                match edit {
                    Some(v) => {
                        copy.insert(field.clone(), v.into());
                        body.insert(&field, v.into());
                    }
                    None => {
                        copy.remove(&field);
                        body.remove(&field);
                    }
                }
            }
            prop_assert_eq!(serde_json::to_vec(&body).unwrap(), serde_json::to_vec(&copy).unwrap());
        }
    }
}
