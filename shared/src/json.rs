//! Strict JSON for request bodies: serde_json's parser, with a value builder of our own (a serde
//! [`Visitor`]) in place of `serde_json::Value`'s, which refuses in the same pass
//!
//! - an object that names a key twice: serde_json keeps the last (`{"kind":"echo",
//!   "kind":"sleep"}` is a sleep), other parsers the first, so a proxy or an audit log in front
//!   of a node could read another job than the one the node runs;
//! - nesting deeper than a limit, counted as the value is built, so that a deep document is
//!   refused at the limit rather than after serde_json has followed it to its own 128 levels.
//!
//! Keys are compared after their escapes are decoded (`"k\u0069nd"` is `"kind"`).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body is not accepted as JSON. Nothing was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonRefusal {
    /// Not JSON at all (or trailing bytes after the value): serde_json's message.
    #[error("is not valid JSON: {0}")]
    Syntax(String),
    /// Arrays and objects nested deeper than the limit.
    #[error("nests arrays and objects deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// An object names a key twice.
    #[error("{path}: the key {key:?} appears twice in one object; a key may appear only once")]
    DuplicateKey {
        /// Where the second one is: the keys and indexes from the top, as `args[0].name`.
        path: String,
        /// The key itself.
        key: String,
    },
}

/// Parses `body` as one JSON value, refusing duplicate keys anywhere and nesting deeper than
/// `max_depth` arrays and objects (keep it under serde_json's own limit of 128).
pub fn parse(body: &[u8], max_depth: usize) -> Result<Value, JsonRefusal> {
    let mut state = State {
        path: Vec::new(),
        depth: 0,
        limit: max_depth,
        refusal: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = Builder(&mut state)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| {
        state
            .refusal
            .take()
            .unwrap_or_else(|| JsonRefusal::Syntax(e.to_string()))
    })
}

/// One step from the top of the document to a value.
enum Step {
    Key(String),
    Index(usize),
}

/// What the builders share while one document is parsed.
struct State {
    path: Vec<Step>,
    depth: usize,
    limit: usize,
    /// Set with the error that stops the parse, so that [`parse`] can tell our refusals from
    /// serde_json's.
    refusal: Option<JsonRefusal>,
}

impl State {
    fn refuse<E: serde::de::Error>(&mut self, refusal: JsonRefusal) -> E {
        let error = E::custom(&refusal);
        self.refusal = Some(refusal);
        error
    }

    /// Into an array or an object.
    fn enter<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > self.limit {
            return Err(self.refuse(JsonRefusal::TooDeep { limit: self.limit }));
        }
        Ok(())
    }

    /// The path to `key` in the object being built, as `args[0].name`.
    fn path_to(&self, key: &str) -> String {
        let mut path = String::new();
        for step in &self.path {
            match step {
                Step::Key(k) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                }
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        path
    }
}

/// Builds one value (and, through new builders, what it holds).
struct Builder<'a>(&'a mut State);

impl<'de> DeserializeSeed<'de> for Builder<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Builder<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.enter()?;
        let mut items = Vec::new();
        loop {
            self.0.path.push(Step::Index(items.len()));
            let item = seq.next_element_seed(Builder(&mut *self.0))?;
            self.0.path.pop();
            match item {
                Some(item) => items.push(item),
                None => break,
            }
        }
        self.0.depth -= 1;
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        self.0.enter()?;
        let mut object = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if object.contains_key(&key) {
                let path = self.0.path_to(&key);
                return Err(self.0.refuse(JsonRefusal::DuplicateKey { path, key }));
            }
            self.0.path.push(Step::Key(key.clone()));
            let value = access.next_value_seed(Builder(&mut *self.0))?;
            self.0.path.pop();
            object.insert(key, value);
        }
        self.0.depth -= 1;
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refusal(body: &str) -> JsonRefusal {
        parse(body.as_bytes(), 32).unwrap_err()
    }

    #[test]
    fn good_json_is_the_value_serde_json_builds() {
        for body in [
            r#"{"kind":"echo","data":"\"[{\u00e9","n":-3,"f":1.5,"big":18446744073709551615}"#,
            r#"[1,[2,{"a":null,"b":true,"c":false}],"x"]"#,
            r#"  "just a string"  "#,
            r#"{}"#,
            r#"{"a":{"k":1},"b":{"k":1}}"#,
        ] {
            let expected: Value = serde_json::from_str(body).unwrap();
            assert_eq!(parse(body.as_bytes(), 32).unwrap(), expected, "{body}");
        }
    }

    #[test]
    fn a_key_twice_is_refused_with_its_path_at_any_depth() {
        assert_eq!(
            refusal(r#"{"kind":"echo","kind":"sleep","ms":1}"#),
            JsonRefusal::DuplicateKey {
                path: "kind".into(),
                key: "kind".into()
            }
        );
        assert_eq!(
            refusal(r#"{"kind":"exec","args":["a",{"x":{"y":1,"y":2}}]}"#),
            JsonRefusal::DuplicateKey {
                path: "args[1].x.y".into(),
                key: "y".into()
            }
        );
        assert_eq!(
            refusal(r#"[{"a":1},{"a":1,"a":1}]"#),
            JsonRefusal::DuplicateKey {
                path: "[1].a".into(),
                key: "a".into()
            }
        );
        // The same key after its escapes are decoded.
        assert_eq!(
            refusal(r#"{"kind":"echo","k\u0069nd":"sleep"}"#),
            JsonRefusal::DuplicateKey {
                path: "kind".into(),
                key: "kind".into()
            }
        );
        let message = refusal(r#"{"a":{"b":0,"b":0}}"#).to_string();
        assert!(
            message.starts_with("a.b: the key \"b\" appears twice"),
            "{message}"
        );
    }

    #[test]
    fn nesting_is_counted_as_the_value_is_built_and_strings_do_not_count() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nested(32).as_bytes(), 32).is_ok());
        assert_eq!(refusal(&nested(33)), JsonRefusal::TooDeep { limit: 32 });
        // Far past serde_json's own limit: still our refusal, not its.
        assert_eq!(
            refusal(&format!(r#"{{"extra":{}}}"#, nested(5000))),
            JsonRefusal::TooDeep { limit: 32 }
        );
        // Siblings do not add up: depth is how deep, not how many.
        let wide = format!("[{}]", vec![nested(31); 100].join(","));
        assert!(parse(wide.as_bytes(), 32).is_ok());
        let text = format!(r#"{{"data":"{}"}}"#, "[{".repeat(100));
        assert_eq!(
            parse(text.as_bytes(), 32).unwrap()["data"],
            json!("[{".repeat(100))
        );
    }

    #[test]
    fn what_is_not_json_is_a_syntax_refusal() {
        for body in [
            "",
            "not json",
            "{\"a\":1} trailing",
            "{\"a\":}",
            "[1,]",
            "\u{fffd}",
        ] {
            assert!(
                matches!(refusal(body), JsonRefusal::Syntax(_)),
                "{body:?}: {:?}",
                refusal(body)
            );
        }
    }
}
