//! PocketBase's update modifiers for non-file fields: `field+` / `field-` add to and
//! subtract from a number; `+field` / `field+` prepend and append to a select or relation
//! (a string or a list), `field-` removes from it. They apply to the value the write starts
//! from (the body's own value of the field when it has one, else the stored one), inside
//! the write, so an update retried because the record changed recomputes them from the new
//! stored value and concurrent increments are not lost. A single select or relation keeps
//! the last value of the result, as PocketBase does. File fields have their own modifiers
//! ([`super::files`]). A modifier key whose target is not a field, or is a field without
//! that modifier, is a field error under the key, never ignored.

use serde_json::{Map, Number, Value};

use super::collection::Collection;
use super::field::{Field, FieldKind};
use super::{FieldError, FieldErrors};

/// `base` with `field`'s modifiers in `body` applied (unchanged when there are none).
pub(crate) fn apply(field: &Field, body: &Map<String, Value>, base: Value) -> Result<Value, FieldError> {
    let name = field.name.as_str();
    let prepend = body.get(&format!("+{name}"));
    let append = body.get(&format!("{name}+"));
    let remove = body.get(&format!("{name}-"));
    if prepend.is_none() && append.is_none() && remove.is_none() {
        return Ok(base);
    }
    match &field.kind {
        FieldKind::File(_) => Ok(super::files::with_file_modifiers(body, name, base)),
        FieldKind::Number(_) => {
            let mut n = number(&base)?;
            if let Some(add) = append {
                n += number(add)?;
            }
            if let Some(sub) = remove {
                n -= number(sub)?;
            }
            Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| FieldError::new("validation_invalid_number", "Must be a finite number."))
        }
        FieldKind::Select(_) | FieldKind::Relation(_) => {
            let mut list = strings(&base)?;
            if let Some(front) = prepend {
                let mut items = strings(front)?;
                items.extend(list);
                list = items;
            }
            if let Some(back) = append {
                list.extend(strings(back)?);
            }
            let mut unique: Vec<String> = Vec::with_capacity(list.len());
            for item in list {
                if !unique.contains(&item) {
                    unique.push(item);
                }
            }
            if let Some(gone) = remove {
                let gone = strings(gone)?;
                unique.retain(|v| !gone.contains(v));
            }
            let multiple = match &field.kind {
                FieldKind::Select(o) => o.is_multiple(),
                FieldKind::Relation(o) => o.is_multiple(),
                _ => true,
            };
            if multiple {
                Ok(Value::Array(unique.into_iter().map(Value::String).collect()))
            } else {
                Ok(Value::String(unique.pop().unwrap_or_default()))
            }
        }
        // Refused by `check_keys`; the base stays as given.
        _ => Ok(base),
    }
}

/// A field error for every modifier key of `body` whose target has no such modifier:
/// `+field` exists for select, relation and file fields; `field+` and `field-` also for
/// numbers.
pub(crate) fn check_keys(collection: &Collection, body: &Map<String, Value>, errors: &mut FieldErrors) {
    for key in body.keys() {
        let (target, prepend) = if let Some(rest) = key.strip_prefix('+') {
            (rest, true)
        } else if let Some(rest) = key.strip_suffix('+').or_else(|| key.strip_suffix('-')) {
            (rest, false)
        } else {
            continue;
        };
        let field = collection.fields.iter().find(|f| f.name == target);
        let supported = match field.map(|f| &f.kind) {
            Some(FieldKind::Select(_) | FieldKind::Relation(_) | FieldKind::File(_)) => true,
            Some(FieldKind::Number(_)) => !prepend,
            _ => false,
        };
        if !supported {
            let message = match field {
                None => format!("Unknown field {target:?} for the modifier {key:?}."),
                Some(f) => format!("The {} field {target:?} has no {key:?} modifier.", f.type_name()),
            };
            errors.insert(key.clone(), FieldError::new("validation_unknown_modifier", message));
        }
    }
}

/// True when `body` holds a modifier key (`+f`, `f+`, `f-`).
pub(crate) fn any(body: &Map<String, Value>) -> bool {
    body.keys().any(|k| k.starts_with('+') || k.ends_with('+') || k.ends_with('-'))
}

/// A number operand: a JSON number or a numeric string (multipart bodies send strings);
/// null and "" count as 0.
fn number(v: &Value) -> Result<f64, FieldError> {
    let bad = || FieldError::new("validation_invalid_number", "Must be a number.");
    match v {
        Value::Null => Ok(0.0),
        Value::Number(n) => n.as_f64().ok_or_else(bad),
        Value::String(s) if s.trim().is_empty() => Ok(0.0),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A select or relation operand: a string, a list of strings, or a JSON-encoded list of
/// strings (as a multipart body may send one); null and "" are empty.
fn strings(v: &Value) -> Result<Vec<String>, FieldError> {
    let bad = || FieldError::new("validation_invalid_value", "Must be a string or a list of strings.");
    match v {
        Value::Null => Ok(vec![]),
        Value::String(s) if s.is_empty() => Ok(vec![]),
        Value::String(s) if s.trim_start().starts_with('[') => match serde_json::from_str::<Value>(s) {
            Ok(list @ Value::Array(_)) => strings(&list),
            _ => Ok(vec![s.clone()]),
        },
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    Value::String(_) | Value::Null => {}
                    Value::Number(n) => out.push(n.to_string()),
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(v: Value) -> Field {
        serde_json::from_value(v).expect("field")
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn numbers_add_and_subtract() {
        let f = field(json!({"name": "n", "type": "number"}));
        let out = apply(&f, &body(json!({"n+": 5, "n-": "2"})), json!(10)).expect("applies");
        assert_eq!(out.as_f64(), Some(13.0));
        assert!(apply(&f, &body(json!({"n+": "x"})), json!(1)).is_err());
    }

    #[test]
    fn lists_prepend_append_remove() {
        let f = field(json!({"name": "t", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3}));
        let out = apply(&f, &body(json!({"+t": "c", "t+": ["a", "b"], "t-": "a"})), json!(["a"]));
        assert_eq!(out.expect("applies"), json!(["c", "b"]));
        let single = field(json!({"name": "s", "type": "select", "values": ["a", "b"], "maxSelect": 1}));
        assert_eq!(apply(&single, &body(json!({"s+": "b"})), json!("a")).expect("applies"), json!("b"));
    }
}
