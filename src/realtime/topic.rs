//! Subscription strings in PocketBase's form: `collection`, `collection/*` or
//! `collection/recordId`, each optionally followed by `?options=` and URL-encoded JSON
//! `{"query": {...}, "headers": {...}}`; `jobs` and `jobs/{id}` for job progress.

use serde_json::{Map, Value};

/// Longest subscription string taken (as PocketBase).
pub const MAX_SUBSCRIPTION_LEN: usize = 2500;
/// Most subscriptions one client may hold (as PocketBase).
pub const MAX_SUBSCRIPTIONS: usize = 1000;

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// Every record of a collection (by id or name), seen through its list rule.
    Collection(String),
    /// One record, seen through the collection's view rule.
    Record { collection: String, id: String },
    /// Every job (superusers only).
    Jobs,
    /// One job (superusers only).
    Job(u64),
}

/// A parsed subscription string.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub topic: Topic,
    /// `options.query`: values as strings, as a query string would carry them.
    pub query: Map<String, Value>,
    /// `options.headers`, names lower-cased with `-` as `_` (as `@request.headers` reads them).
    pub headers: Map<String, Value>,
}

fn stringify(value: &Value) -> Value {
    match value {
        Value::String(_) => value.clone(),
        Value::Null => Value::String(String::new()),
        other => Value::String(other.to_string()),
    }
}

/// Parses one subscription string; the error says what is wrong with it.
pub fn parse(raw: &str) -> Result<Parsed, String> {
    if raw.len() > MAX_SUBSCRIPTION_LEN {
        return Err(format!("a subscription is longer than {MAX_SUBSCRIPTION_LEN} characters"));
    }
    if raw.contains(['\r', '\n']) {
        return Err("a subscription has a line break".into());
    }
    let (name, options) = match raw.split_once("?options=") {
        Some((name, options)) => (name, Some(options)),
        None => (raw, None),
    };
    let (mut query, mut headers) = (Map::new(), Map::new());
    if let Some(options) = options {
        let decoded: String = url::form_urlencoded::parse(format!("o={options}").as_bytes())
            .map(|(_, v)| v.into_owned())
            .collect();
        let value: Value = serde_json::from_str(&decoded)
            .map_err(|_| format!("the options of \"{name}\" are not a JSON object"))?;
        let Value::Object(object) = value else {
            return Err(format!("the options of \"{name}\" are not a JSON object"));
        };
        for (key, value) in object {
            match (key.as_str(), value) {
                ("query", Value::Object(q)) => {
                    query = q.iter().map(|(k, v)| (k.clone(), stringify(v))).collect();
                }
                ("headers", Value::Object(h)) => {
                    headers =
                        h.iter().map(|(k, v)| (k.to_lowercase().replace('-', "_"), stringify(v))).collect();
                }
                ("query" | "headers", Value::Null) => {}
                (key @ ("query" | "headers"), _) => {
                    return Err(format!("options.{key} of \"{name}\" must be an object"));
                }
                _ => {}
            }
        }
    }
    let topic = match name.split_once('/') {
        _ if name.is_empty() => return Err("a subscription is empty".into()),
        None if name == "jobs" => Topic::Jobs,
        None => Topic::Collection(name.to_string()),
        Some(("jobs", id)) => {
            Topic::Job(id.parse().map_err(|_| format!("\"{name}\": a job id is a number"))?)
        }
        Some((collection, "*")) if !collection.is_empty() => Topic::Collection(collection.to_string()),
        Some((collection, id)) if !collection.is_empty() && !id.is_empty() && !id.contains('/') => {
            Topic::Record { collection: collection.to_string(), id: id.to_string() }
        }
        Some(_) => {
            return Err(format!("\"{name}\" is not a topic (collection, collection/*, collection/id)"))
        }
    };
    Ok(Parsed { topic, query, headers })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn topics_parse_like_pocketbase() {
        assert_eq!(parse("posts").expect("t").topic, Topic::Collection("posts".into()));
        assert_eq!(parse("posts/*").expect("t").topic, Topic::Collection("posts".into()));
        assert_eq!(
            parse("posts/abc").expect("t").topic,
            Topic::Record { collection: "posts".into(), id: "abc".into() }
        );
        assert_eq!(parse("jobs").expect("t").topic, Topic::Jobs);
        assert_eq!(parse("jobs/42").expect("t").topic, Topic::Job(42));
        assert!(parse("jobs/x").is_err());
        assert!(parse("").is_err());
        assert!(parse("/x").is_err());
        assert!(parse("a/b/c").is_err());
        assert!(parse(&"x".repeat(MAX_SUBSCRIPTION_LEN + 1)).is_err());
        assert!(parse("posts\nevent:x").is_err());
    }

    #[test]
    fn options_carry_query_and_headers() {
        // The SDK's form: encodeURIComponent(JSON.stringify(options)).
        let options = r#"{"query":{"expand":"author","perPage":5},"headers":{"X-Token":"t"}}"#;
        let encoded: String = url::form_urlencoded::byte_serialize(options.as_bytes()).collect();
        let parsed = parse(&format!("posts/*?options={encoded}")).expect("parse");
        assert_eq!(parsed.topic, Topic::Collection("posts".into()));
        assert_eq!(parsed.query.get("expand"), Some(&json!("author")));
        assert_eq!(parsed.query.get("perPage"), Some(&json!("5")));
        assert_eq!(parsed.headers.get("x_token"), Some(&json!("t")));
        assert!(parse("posts?options=%7Bnope").is_err());
        assert!(parse("posts?options=%5B%5D").is_err());
        assert!(parse("posts?options=%7B%22query%22%3A1%7D").is_err());
    }
}
