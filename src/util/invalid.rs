//! The one shape of a validation failure, in PocketBase's dialect: a message and the invalid
//! fields, each with a code and a message. Every domain parses its input into a serde struct
//! ([`parse_object`]), collects what is wrong with it in a [`Collector`], and returns the
//! resulting [`Invalid`] inside its own error enum; `api/` renders every one of them the
//! same way (400, `data` keyed by field).

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
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

    /// A failure of one field, summarized by that field's own message (how the jobs and mail
    /// domains answer: see [`Summary::FirstProblem`]).
    pub fn of(field: &str, code: &str, text: impl Into<String>) -> Invalid {
        Invalid::one(Summary::FirstProblem, field, code, text)
    }

    /// A failure of one field, summarized by `summary`.
    fn one(summary: Summary<'_>, field: &str, code: &str, text: impl Into<String>) -> Invalid {
        let text = text.into();
        let message = match summary {
            Summary::Text(message) => message.to_string(),
            Summary::FirstProblem => text.clone(),
        };
        Invalid::field(&message, field, code, text)
    }

    /// Each invalid field with its code, by name (for tests that read like the answer).
    #[cfg(test)]
    pub fn codes(&self) -> Vec<(&str, &str)> {
        self.fields.iter().map(|(field, e)| (field.as_str(), e.code.as_str())).collect()
    }

    /// The first invalid field and its error (by name), if any.
    pub fn first(&self) -> Option<(&String, &FieldError)> {
        self.fields.iter().next()
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the `message` of a failure says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary<'a> {
    /// A fixed text naming the action (`Failed to create the API key.`).
    Text(&'a str),
    /// The message of the first problem noted (the jobs and mail APIs answer so).
    FirstProblem,
}

impl<'a> From<&'a str> for Summary<'a> {
    fn from(text: &'a str) -> Summary<'a> {
        Summary::Text(text)
    }
}

/// Gathers every problem with one input before answering, so a client sees them all at once.
#[derive(Debug, Default)]
pub struct Collector {
    fields: FieldErrors,
    /// The message of the first problem noted, for [`Summary::FirstProblem`].
    first: Option<String>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Notes a problem with `field` (the first problem of a field is kept).
    pub fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.add_error(field, FieldError::new(code, message));
    }

    /// Notes `error` for `field` (the first problem of a field is kept).
    pub fn add_error(&mut self, field: &str, error: FieldError) {
        if self.first.is_none() {
            self.first = Some(error.message.clone());
        }
        self.fields.entry(field.to_string()).or_insert(error);
    }

    /// Notes every problem of `invalid` (a check that answers with its own failure).
    pub fn add_invalid(&mut self, invalid: Invalid) {
        for (field, error) in invalid.fields {
            self.add_error(&field, error);
        }
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

    /// Takes the `Err` of `result` (a check of its own with an [`Invalid`] answer) as
    /// problems, passing the `Ok` value on.
    pub fn check_invalid<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(invalid) => {
                self.add_invalid(invalid);
                None
            }
        }
    }

    /// The value of an optional member, noting `code` and `message` for `field` when it
    /// was sent with the wrong type.
    pub fn typed<T>(&mut self, field: &str, value: Option<Typed<T>>, code: &str, message: &str) -> Option<T> {
        match value {
            None => None,
            Some(Typed::Ok(value)) => Some(value),
            Some(Typed::Wrong(_)) => {
                self.add(field, code, message);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Ok` when nothing was noted, else the failure summarized by `summary`.
    pub fn finish<'a>(self, summary: impl Into<Summary<'a>>) -> Result<(), Invalid> {
        if self.fields.is_empty() {
            return Ok(());
        }
        let message = match summary.into() {
            Summary::Text(text) => text.to_string(),
            Summary::FirstProblem => self.first.unwrap_or_default(),
        };
        Err(Invalid { message, fields: self.fields })
    }
}

/// A member of an input as sent: of the expected type, or the JSON that did not fit, so
/// validation can name the member with its own code and message instead of failing the
/// whole body with serde's.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<T> {
    Ok(T),
    Wrong(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Typed<T>, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        Ok(match T::deserialize(&raw) {
            Ok(value) => Typed::Ok(value),
            Err(_) => Typed::Wrong(raw),
        })
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<T>` member: a member
/// that is present is `Some`, even when it is `null` (with `T = Option<…>` or
/// [`Typed`]), so an update can tell "set to null" from "leave alone".
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Parses a JSON object body into `T`. A body that is not an object, or a member of the
/// wrong type, is a failure of `body`; an unknown member (with
/// `#[serde(deny_unknown_fields)]`) or a missing one is a failure of that member when it is
/// one of `T`'s own (a nested struct's members are not named: serde does not say where
/// they are).
pub fn parse_object<'a, T: DeserializeOwned>(
    body: Value,
    summary: impl Into<Summary<'a>>,
) -> Result<T, Invalid> {
    let summary = summary.into();
    let Some(object) = body.as_object() else {
        return Err(Invalid::one(
            summary,
            "body",
            "validation_invalid_body",
            "The body must be a JSON object.",
        ));
    };
    T::deserialize(&body).map_err(|err| {
        let text = err.to_string();
        let members = member_names::<T>();
        match member_named_in(&text) {
            Some(("unknown field", name)) if object.contains_key(name) && !members.contains(&name) => {
                Invalid::one(summary, name, "validation_unknown_field", "Unknown field.")
            }
            Some(("missing field", name)) if !object.contains_key(name) && members.contains(&name) => {
                Invalid::one(summary, name, "validation_required", "Cannot be blank.")
            }
            _ => Invalid::one(summary, "body", "validation_invalid_type", text),
        }
    })
}

/// The kind (`unknown field`, `missing field`) and member a serde error message names, if any.
fn member_named_in(text: &str) -> Option<(&str, &str)> {
    let kind = ["unknown field", "missing field"].into_iter().find(|k| text.starts_with(k))?;
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    let name = &text[start..start + len];
    (!name.is_empty()).then_some((kind, name))
}

/// The wire names of `T`'s own members when it is a struct (empty otherwise): asked of
/// serde by a deserializer that only records what `deserialize_struct` is told.
fn member_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names<'n>(&'n mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("names taken"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut names));
    names
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
        assert_eq!(err.fields["nmae"], FieldError::new("validation_unknown_field", "Unknown field."));
        assert_eq!(err.message, "Bad.");
        let err = parse_object::<Input>(json!({}), "Bad.").expect_err("missing");
        assert_eq!(err.fields["name"].code, "validation_required");
        let err = parse_object::<Input>(json!([1]), "Bad.").expect_err("array");
        assert_eq!(err.fields["body"].code, "validation_invalid_body");
        let err = parse_object::<Input>(json!({"name": 5}), "Bad.").expect_err("type");
        assert_eq!(err.fields["body"].code, "validation_invalid_type");
        assert!(parse_object::<Input>(json!({"name": "a"}), "Bad.").is_ok());
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        inner: Option<Input>,
    }

    #[test]
    fn a_nested_member_is_not_taken_for_a_member_of_the_body() {
        let err = parse_object::<Outer>(json!({"inner": {}}), "Bad.").expect_err("missing");
        assert_eq!(err.fields.keys().collect::<Vec<_>>(), ["body"], "{err:?}");
        let err =
            parse_object::<Outer>(json!({"inner": {"name": "a", "x": 1}}), "Bad.").expect_err("unknown");
        assert_eq!(err.fields.keys().collect::<Vec<_>>(), ["body"], "{err:?}");
    }

    #[test]
    fn a_failure_can_be_summarized_by_its_first_problem() {
        let err = parse_object::<Input>(json!({"name": "a", "x": 1}), Summary::FirstProblem).expect_err("x");
        assert_eq!(err.message, "Unknown field.");
        let mut c = Collector::new();
        c.add("zeta", "validation_required", "Cannot be blank.");
        c.add("alpha", "validation_length", "Too long.");
        let err = c.finish(Summary::FirstProblem).expect_err("invalid");
        assert_eq!(err.message, "Cannot be blank.", "the first noted, not the first by name");
        assert_eq!(Invalid::of("a", "code", "Text.").message, "Text.");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        #[serde(default)]
        count: Option<Typed<u64>>,
        #[serde(default, deserialize_with = "present")]
        label: Option<Option<Typed<String>>>,
    }

    #[test]
    fn typed_members_keep_what_did_not_fit_and_present_tells_null_from_absent() {
        let patch: Patch = parse_object(json!({"count": "many", "label": null}), "Bad.").expect("parses");
        assert_eq!(patch.count, Some(Typed::Wrong(json!("many"))));
        assert_eq!(patch.label, Some(None));
        let patch: Patch = parse_object(json!({"count": 3}), "Bad.").expect("parses");
        assert_eq!((patch.count, patch.label), (Some(Typed::Ok(3)), None));
        let patch: Patch = parse_object(json!({"count": null, "label": 1}), "Bad.").expect("parses");
        assert_eq!((patch.count, patch.label), (None, Some(Some(Typed::Wrong(json!(1))))));

        let mut c = Collector::new();
        assert_eq!(c.typed("count", Some(Typed::Ok(3u64)), "validation_invalid_number", "Nope."), Some(3));
        assert_eq!(c.typed::<u64>("count", None, "validation_invalid_number", "Nope."), None);
        assert!(c.is_empty());
        assert_eq!(
            c.typed::<u64>("count", Some(Typed::Wrong(json!("x"))), "validation_invalid_number", "Nope."),
            None
        );
        assert_eq!(c.check_invalid::<()>(Err(Invalid::of("other", "validation_x", "X."))), None);
        let err = c.finish("Bad.").expect_err("invalid");
        assert_eq!(err.fields["count"].code, "validation_invalid_number");
        assert_eq!(err.fields["other"].code, "validation_x");
    }
}
