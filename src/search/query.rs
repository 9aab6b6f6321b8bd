//! The search box language and its translation into a tantivy query.
//!
//! `rust async` — every word must match (in any indexed field); `"exact phrase"`;
//! `title:rust` or `title:"a phrase"` — only in that field; `-word` — must not match.
//! Words match exactly (ranked by BM25, with the field's boost), with typos (one edit from
//! 5 characters, two from 9; ranked lower) when no document holds the word as typed (as
//! Typesense does by default: a word the index knows is taken as meant), and the last word
//! also as a prefix when the query does not end in a space (search-as-you-type).

use tantivy::query::{
    BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use super::schema::{self, IndexSchema};
use super::SearchError;
use crate::records::collection::Collection;

/// Longest accepted query, in bytes.
pub const MAX_QUERY_BYTES: usize = 1000;
/// Most words and phrases in one query.
pub const MAX_CLAUSES: usize = 32;
/// Weight of a typo match relative to an exact one.
const FUZZY_WEIGHT: f32 = 0.3;
/// Weight of a prefix match relative to an exact one.
const PREFIX_WEIGHT: f32 = 0.5;

/// One word or phrase of the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// `title:` scoping, if any.
    pub field: Option<String>,
    /// The words as typed (one for a word, several for a phrase).
    pub text: String,
    pub phrase: bool,
    pub negated: bool,
    /// The last word, typed without a trailing space: also matched as a prefix.
    pub prefix: bool,
}

/// Parses the search box text. Errors are the caller's (400).
pub fn parse(q: &str) -> Result<Vec<Clause>, SearchError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(SearchError::BadQuery(format!("The query is longer than {MAX_QUERY_BYTES} bytes.")));
    }
    let mut clauses = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut negated = false;
        if chars[i] == '-' && chars.get(i + 1).is_some_and(|c| !c.is_whitespace()) {
            negated = true;
            i += 1;
        }
        // `name:` scoping: an identifier followed by a colon and something.
        let mut field = None;
        let mut j = i;
        while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        if j > i && chars.get(j) == Some(&':') && chars.get(j + 1).is_some_and(|c| !c.is_whitespace()) {
            field = Some(chars[i..j].iter().collect::<String>());
            i = j + 1;
        }
        if chars.get(i) == Some(&'"') {
            let start = i + 1;
            let Some(len) = chars[start..].iter().position(|c| *c == '"') else {
                return Err(SearchError::BadQuery("A phrase is missing its closing quote.".into()));
            };
            clauses.push(Clause {
                field,
                text: chars[start..start + len].iter().collect(),
                phrase: true,
                negated,
                prefix: false,
            });
            i = start + len + 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            clauses.push(Clause {
                field,
                text: chars[start..i].iter().collect(),
                phrase: false,
                negated,
                prefix: i == chars.len(),
            });
        }
        if clauses.len() > MAX_CLAUSES {
            return Err(SearchError::BadQuery(format!("At most {MAX_CLAUSES} words or phrases.")));
        }
    }
    // Only the very last word is a prefix, and only if nothing follows it.
    let last = clauses.len().saturating_sub(1);
    for (n, clause) in clauses.iter_mut().enumerate() {
        clause.prefix = clause.prefix && n == last && !clause.phrase && !clause.negated;
    }
    Ok(clauses)
}

/// Typos allowed in a word of `chars` characters.
pub fn typo_budget(chars: usize) -> u8 {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// What highlighting marks: analyzed terms, typo-tolerant terms and prefixes.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// A handful of terms: a linear scan beats hashing every document token.
    pub exact: Vec<String>,
    pub fuzzy: Vec<(String, u8)>,
    pub prefixes: Vec<String>,
}

impl Matcher {
    /// Whether an analyzed token of the document matches the query.
    pub fn matches(&self, token: &str) -> bool {
        self.exact.iter().any(|t| t == token)
            || self.prefixes.iter().any(|p| token.starts_with(p.as_str()))
            || self.fuzzy.iter().any(|(t, d)| within_distance(t, token, *d))
    }
}

/// Levenshtein distance of `a` and `b` is at most `max` (counted on chars).
pub fn within_distance(a: &str, b: &str, max: u8) -> bool {
    let max = usize::from(max);
    // Most tokens differ in length by more than `max`: rule them out before allocating.
    if a.chars().count().abs_diff(b.chars().count()) > max {
        return false;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        if cur.iter().min().is_some_and(|m| *m > max) {
            return false;
        }
        prev = cur;
    }
    prev[b.len()] <= max
}

/// Every document holding a term that starts with `prefix` (all of them, however many),
/// each scored the query's boost. A one-term phrase prefix is a range of the term
/// dictionary, which seeks straight to the prefix instead of walking an automaton over the
/// whole path's terms.
fn prefix_query(prefix: Term) -> PhrasePrefixQuery {
    let mut query = PhrasePrefixQuery::new(vec![prefix]);
    query.set_max_expansions(u32::MAX);
    query
}

/// A query restricted to one collection, with what highlighting needs.
pub struct Built {
    /// `None`: nothing to search for (the words were all punctuation).
    pub query: Option<Box<dyn Query>>,
    pub matcher: Matcher,
}

/// Builds the tantivy query of `clauses` over `collection`'s searched fields. `known` says
/// whether some document holds a term (typo matching is for words no document holds).
pub fn build(
    schema: &IndexSchema,
    collection: &Collection,
    clauses: &[Clause],
    known: &dyn Fn(&Term) -> bool,
) -> Result<Built, SearchError> {
    let settings = &collection.search;
    let json = schema.text_field(settings.language);
    let mut analyzer = schema::analyzer(settings.language);
    let mut surface = schema::surface_analyzer();
    let mut matcher = Matcher::default();
    let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut positive = false;
    for clause in clauses {
        let fields: Vec<(&str, f32)> = match &clause.field {
            Some(name) => match settings.fields.iter().find(|f| &f.name == name) {
                Some(f) => vec![(f.name.as_str(), f.boost)],
                None => {
                    return Err(SearchError::BadQuery(format!(
                        "{name:?} is not a searchable field of {}.",
                        collection.name
                    )))
                }
            },
            None => settings.fields.iter().map(|f| (f.name.as_str(), f.boost)).collect(),
        };
        let terms: Vec<String> =
            schema::tokens(&mut analyzer, &clause.text).into_iter().map(|t| t.0).collect();
        if terms.is_empty() {
            continue;
        }
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if terms.len() == 1 && !clause.phrase {
            let term = &terms[0];
            let typed = schema::tokens(&mut surface, &clause.text).into_iter().next().map(|t| t.0);
            let typed = typed.unwrap_or_else(|| term.clone());
            let known_word = fields.iter().any(|(path, _)| known(&schema.json_term(json, path, term)));
            let budget = if known_word { 0 } else { typo_budget(typed.chars().count()) };
            for (path, boost) in &fields {
                let exact = schema.json_term(json, path, term);
                alternatives.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(exact.clone(), IndexRecordOption::WithFreqs)),
                        *boost,
                    )),
                ));
                if clause.negated {
                    continue;
                }
                if budget > 0 {
                    alternatives.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(FuzzyTermQuery::new(exact, budget, true)),
                            boost * FUZZY_WEIGHT,
                        )),
                    ));
                }
                if clause.prefix {
                    alternatives.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(prefix_query(schema.json_term(json, path, &typed))),
                            boost * PREFIX_WEIGHT,
                        )),
                    ));
                }
            }
            if !clause.negated {
                matcher.exact.push(term.clone());
                if budget > 0 {
                    matcher.fuzzy.push((term.clone(), budget));
                }
                if clause.prefix {
                    matcher.prefixes.push(typed.clone());
                    // The stemmed form of a prefix is usually shorter: mark by it too.
                    matcher.prefixes.push(term.clone());
                }
            }
        } else {
            for (path, boost) in &fields {
                let phrase_terms: Vec<_> = terms.iter().map(|t| schema.json_term(json, path, t)).collect();
                let query: Box<dyn Query> = if phrase_terms.len() == 1 {
                    Box::new(TermQuery::new(phrase_terms[0].clone(), IndexRecordOption::WithFreqs))
                } else {
                    Box::new(PhraseQuery::new(phrase_terms))
                };
                alternatives.push((Occur::Should, Box::new(BoostQuery::new(query, *boost))));
            }
            if !clause.negated {
                matcher.exact.extend(terms.iter().cloned());
            }
        }
        let any_field: Box<dyn Query> = Box::new(BooleanQuery::new(alternatives));
        if clause.negated {
            parts.push((Occur::MustNot, any_field));
        } else {
            positive = true;
            parts.push((Occur::Must, any_field));
        }
    }
    if !positive {
        if parts.is_empty() {
            return Ok(Built { query: None, matcher });
        }
        return Err(SearchError::BadQuery("The query needs at least one word that is not excluded.".into()));
    }
    parts.push((
        Occur::Must,
        Box::new(TermQuery::new(schema.collection_term(&collection.id), IndexRecordOption::Basic)),
    ));
    Ok(Built { query: Some(Box::new(BooleanQuery::new(parts))), matcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_phrases_fields_and_exclusions() {
        let clauses = parse(r#"rust title:"async io" -java tok"#).expect("parses");
        assert_eq!(clauses.len(), 4);
        assert_eq!(clauses[0].text, "rust");
        assert!(!clauses[0].prefix);
        assert_eq!(clauses[1].field.as_deref(), Some("title"));
        assert!(clauses[1].phrase);
        assert_eq!(clauses[1].text, "async io");
        assert!(clauses[2].negated);
        assert!(clauses[3].prefix);
        assert!(!parse("tok ").expect("parses")[0].prefix);
    }

    #[test]
    fn unclosed_phrase_is_a_bad_query() {
        assert!(matches!(parse("\"open"), Err(SearchError::BadQuery(_))));
    }

    #[test]
    fn typo_budget_grows_with_word_length() {
        assert_eq!(typo_budget(4), 0);
        assert_eq!(typo_budget(5), 1);
        assert_eq!(typo_budget(9), 2);
    }

    #[test]
    fn distance_counts_edits() {
        assert!(within_distance("search", "serch", 1));
        assert!(!within_distance("search", "sarch", 0));
        assert!(!within_distance("search", "xyzabc", 2));
        assert!(within_distance("kitten", "sitting", 3));
    }
}
