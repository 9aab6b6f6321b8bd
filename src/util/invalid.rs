//! The one shape of a validation failure, in PocketBase's dialect: a message and the invalid
//! fields, each with a code and a message. Every domain parses its input into a serde struct
//! ([`parse_object`]), collects what is wrong with it in a [`Collector`], and returns the
//! resulting [`Invalid`] inside its own error enum; `api/` renders every one of them the
//! same way (400, `data` keyed by field).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(code: &str, message: impl Into<String>) -> FieldError {
        FieldError { code: code.to_string(), message: message.into() }
    }
}

/// Field errors keyed by field name (or by a path such as `fields.2.name`).
pub type FieldErrors = BTreeMap<String, FieldError>;

/// A validation failure: what failed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub fields: FieldErrors,
}

impl Invalid {
    /// A failure with a single field error.
    pub fn field(message: &str, field: &str, code: &str, text: impl Into<String>) -> Invalid {
        let mut fields = FieldErrors::new();
        fields.insert(field.to_string(), FieldError::new(code, text));
        Invalid { message: message.to_string(), fields }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Gathers every problem with one input before answering, so a client sees them all at once.
#[derive(Debug, Default)]
pub struct Collector {
    fields: FieldErrors,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Notes a problem with `field` (the first problem of a field is kept).
    pub fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.fields.entry(field.to_string()).or_insert_with(|| FieldError::new(code, message));
    }

    /// Notes `error` for `field` (the first problem of a field is kept).
    pub fn add_error(&mut self, field: &str, error: FieldError) {
        self.fields.entry(field.to_string()).or_insert(error);
    }

    /// Takes the `Err` of `result` as a problem with `field`, passing the `Ok` value on.
    pub fn check<T>(&mut self, field: &str, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add_error(field, error);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Ok` when nothing was noted, else the failure with `message`.
    pub fn finish(self, message: &str) -> Result<(), Invalid> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(Invalid { message: message.to_string(), fields: self.fields })
        }
    }
}

/// Parses a JSON object body into `T`. A body that is not an object, or a field of the
/// wrong type or an unknown one (with `#[serde(deny_unknown_fields)]`), is a failure with
/// `message` naming the field where serde can tell it.
pub fn parse_object<T: DeserializeOwned>(body: Value, message: &str) -> Result<T, Invalid> {
    if !body.is_object() {
        return Err(Invalid::field(
            message,
            "body",
            "validation_invalid_body",
            "The body must be a JSON object.",
        ));
    }
    serde_json::from_value(body).map_err(|err| {
        let text = err.to_string();
        let field = field_named_in(&text).unwrap_or_else(|| "body".to_string());
        Invalid::field(message, &field, "validation_invalid_type", text)
    })
}

/// The field a serde error message names (`unknown field `x``, `missing field `x``, or
/// `invalid type … for field `x``), if any.
fn field_named_in(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    let name = &text[start..start + len];
    let named = text.starts_with("unknown field") || text.starts_with("missing field");
    (named && !name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn the_collector_keeps_the_first_problem_of_each_field() {
        let mut c = Collector::new();
        assert!(c.is_empty());
        c.add("name", "validation_required", "Cannot be blank.");
        c.add("name", "validation_length", "Too long.");
        assert_eq!(c.check("age", Ok::<u8, FieldError>(3)), Some(3));
        assert_eq!(c.check::<u8>("age", Err(FieldError::new("validation_min", "Too small."))), None);
        let invalid = c.finish("Failed.").expect_err("invalid");
        assert_eq!(invalid.message, "Failed.");
        assert_eq!(invalid.fields["name"].code, "validation_required");
        assert_eq!(invalid.fields["age"].code, "validation_min");
        assert!(Collector::new().finish("x").is_ok());
    }

    #[test]
    fn bodies_that_do_not_fit_name_the_field() {
        let err = parse_object::<Input>(json!({"name": "a", "nmae": 1}), "Bad.").expect_err("unknown");
        assert!(err.fields.contains_key("nmae"), "{err:?}");
        let err = parse_object::<Input>(json!({}), "Bad.").expect_err("missing");
        assert!(err.fields.contains_key("name"), "{err:?}");
        let err = parse_object::<Input>(json!([1]), "Bad.").expect_err("array");
        assert_eq!(err.fields["body"].code, "validation_invalid_body");
        let err = parse_object::<Input>(json!({"name": 5}), "Bad.").expect_err("type");
        assert_eq!(err.fields["body"].code, "validation_invalid_type");
        assert!(parse_object::<Input>(json!({"name": "a"}), "Bad.").is_ok());
    }
}
