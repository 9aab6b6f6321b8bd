//! The tantivy schema shared by every collection, the analyzers, and how a record becomes
//! a document.
//!
//! One index holds all collections. A document is `key` (`collection id/record id`, for
//! replacing and deleting), `collection` (for dropping or restricting to one collection), the
//! record id (stored), and the searched fields as one JSON object in `plain` or `english`
//! depending on the collection's language, so each field is its own JSON path (`title:rust`
//! is the path `title`) with positions for phrases.

use std::collections::BTreeMap;

use serde_json::Value;
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, OwnedValue, Schema, TextFieldIndexing, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
    TokenStream,
};
use tantivy::{Index, TantivyDocument, Term};

use crate::records::catalog::Catalog;
use crate::records::collection::{Collection, SearchLanguage};
use crate::records::field::{relation_ids, FieldKind};
use crate::records::filter::{email_visible, is_guarded_email, RecordSource};
use crate::records::record::Stored;

/// Bump when the schema, the analyzers or the document layout change: an index written with
/// another version is rebuilt at startup.
pub const INDEX_VERSION: u32 = 1;

/// Tokenizer of the language-neutral JSON field.
const PLAIN_TOKENIZER: &str = "bb_plain";
/// Tokenizer of the English JSON field.
const ENGLISH_TOKENIZER: &str = "bb_english";
/// Longest token kept (longer ones are noise: hashes, base64).
pub(crate) const MAX_TOKEN_BYTES: usize = 64;

/// The fields of the index.
#[derive(Clone)]
pub struct IndexSchema {
    pub schema: Schema,
    pub key: Field,
    pub collection: Field,
    pub record_id: Field,
    pub plain: Field,
    pub english: Field,
}

impl IndexSchema {
    pub fn new() -> IndexSchema {
        let mut builder = Schema::builder();
        let key = builder.add_text_field("key", STRING);
        let collection = builder.add_text_field("collection", STRING);
        let record_id = builder.add_text_field("id", STORED);
        let json = |tokenizer: &str| {
            JsonObjectOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
        };
        let plain = builder.add_json_field("plain", json(PLAIN_TOKENIZER));
        let english = builder.add_json_field("english", json(ENGLISH_TOKENIZER));
        IndexSchema { schema: builder.build(), key, collection, record_id, plain, english }
    }

    /// The JSON field a collection's text goes to.
    pub fn text_field(&self, language: SearchLanguage) -> Field {
        match language {
            SearchLanguage::Default => self.plain,
            SearchLanguage::English => self.english,
        }
    }

    /// The term naming one document.
    pub fn key_term(&self, collection_id: &str, record_id: &str) -> Term {
        Term::from_field_text(self.key, &doc_key(collection_id, record_id))
    }

    /// The term every document of a collection has.
    pub fn collection_term(&self, collection_id: &str) -> Term {
        Term::from_field_text(self.collection, collection_id)
    }

    /// A term of `text` (already analyzed) at the JSON path `path` of `field`.
    pub fn json_term(&self, field: Field, path: &str, token: &str) -> Term {
        let mut term = Term::from_field_json_path(field, path, false);
        term.append_type_and_str(token);
        term
    }
}

impl Default for IndexSchema {
    fn default() -> Self {
        IndexSchema::new()
    }
}

fn doc_key(collection_id: &str, record_id: &str) -> String {
    format!("{collection_id}/{record_id}")
}

/// The analyzer of a language: split on non-alphanumerics, drop very long tokens,
/// lower-case, fold accents (`café` = `cafe`), and for English, stem.
pub fn analyzer(language: SearchLanguage) -> TextAnalyzer {
    let base = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    match language {
        SearchLanguage::Default => base.build(),
        SearchLanguage::English => base.filter(Stemmer::new(Language::English)).build(),
    }
}

/// The analyzer without stemming, for prefix and typo matching of what the user typed.
pub fn surface_analyzer() -> TextAnalyzer {
    analyzer(SearchLanguage::Default)
}

/// Registers the analyzers on an opened or created index.
pub fn register_analyzers(index: &Index) {
    index.tokenizers().register(PLAIN_TOKENIZER, analyzer(SearchLanguage::Default));
    index.tokenizers().register(ENGLISH_TOKENIZER, analyzer(SearchLanguage::English));
}

/// The analyzed tokens of `text`, with their byte offsets.
pub fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = stream.token();
        out.push((token.text.clone(), token.offset_from, token.offset_to));
    }
    out
}

/// The text a searched field contributes, as the strings to index (several for multi-valued
/// fields). One index answers every caller, so it holds only what every caller who may see
/// the record may also see of it: relations contribute the presentable fields of the
/// records they point at only when the target collection's view rule is public, and an
/// auth collection's email is indexed only while its record shows it (`emailVisibility`).
pub fn field_texts(
    collection: &Collection,
    name: &str,
    stored: &Stored,
    catalog: &Catalog,
    related: &dyn RecordSource,
) -> Vec<String> {
    let Some(field) = collection.field(name) else {
        return Vec::new();
    };
    if is_guarded_email(collection, name) && !email_visible(&collection.id, stored, None) {
        return Vec::new();
    }
    let value = stored.get(name);
    match &field.kind {
        FieldKind::Relation(options) => {
            let Some(target) = catalog.get(&options.collection_id) else {
                return Vec::new();
            };
            if !publicly_viewable(&target.collection) {
                return Vec::new();
            }
            let shown: Vec<&str> = target
                .collection
                .fields
                .iter()
                .filter(|f| f.presentable && !f.is_never_returned())
                .map(|f| f.name.as_str())
                .collect();
            let mut out = Vec::new();
            for id in relation_ids(value) {
                if let Some(record) = related.record(&options.collection_id, &id) {
                    for name in &shown {
                        if is_guarded_email(&target.collection, name)
                            && !email_visible(&target.collection.id, &record, None)
                        {
                            continue;
                        }
                        out.extend(strings(record.get(*name)));
                    }
                }
            }
            out
        }
        FieldKind::Editor(_) => strings(value).iter().map(|s| plain_text(s)).collect(),
        _ => strings(value),
    }
}

/// True when everyone may view every record of `collection` (its view rule is `""`): only
/// then may its text stand in other collections' documents.
pub fn publicly_viewable(collection: &Collection) -> bool {
    collection.view_rule.as_deref().is_some_and(|r| r.trim().is_empty())
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str()).map(String::from).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// Editor fields hold HTML: index the text, not the markup. Tags become spaces and the
/// common character entities are decoded.
pub fn plain_text(text: &str) -> String {
    if !text.contains('<') && !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    if !out.contains('&') {
        return out;
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The document of one record of a searchable collection.
pub fn document(
    schema: &IndexSchema,
    collection: &Collection,
    catalog: &Catalog,
    related: &dyn RecordSource,
    record_id: &str,
    stored: &Stored,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_text(schema.key, doc_key(&collection.id, record_id));
    doc.add_text(schema.collection, &collection.id);
    doc.add_text(schema.record_id, record_id);
    let mut object = BTreeMap::new();
    for wanted in &collection.search.fields {
        let texts = field_texts(collection, &wanted.name, stored, catalog, related);
        if texts.is_empty() {
            continue;
        }
        let value = if texts.len() == 1 {
            texts.into_iter().map(OwnedValue::Str).next().unwrap_or(OwnedValue::Null)
        } else {
            OwnedValue::Array(texts.into_iter().map(OwnedValue::Str).collect())
        };
        object.insert(wanted.name.clone(), value);
    }
    doc.add_object(schema.text_field(collection.search.language), object);
    doc
}

#[cfg(test)]
mod tests {
    use super::plain_text;

    #[test]
    fn editor_html_becomes_its_text() {
        assert_eq!(plain_text("<p>Fish &amp; chips</p>"), " Fish & chips ");
        assert_eq!(plain_text("plain"), "plain");
    }
}
