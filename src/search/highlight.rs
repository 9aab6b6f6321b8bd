//! Highlighted snippets: the part of a field's text around the first match, HTML-escaped,
//! with every matching word wrapped in `<mark>…</mark>`.
//!
//! Tokens are found exactly as the collection's analyzer finds them. For a language without
//! stemming and an all-ASCII text that analyzer is simple enough to do in place (runs of
//! ASCII letters and digits shorter than [`schema::MAX_TOKEN_BYTES`], lower-cased; folding
//! leaves ASCII alone), so that case scans the bytes instead of running tantivy's token
//! stream, starts at the first place a query term occurs (when the query has no typo
//! terms) and stops at the snippet's end; every other text goes through the analyzer.

use memchr::memmem;
use tantivy::tokenizer::{TextAnalyzer, TokenStream};

use super::query::Matcher;
use super::schema;
use crate::records::collection::SearchLanguage;

/// Characters of context kept before the first match.
const BEFORE: usize = 60;
/// Longest snippet, in characters (before escaping and marks).
const SNIPPET_CHARS: usize = 240;

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// Moves `at` back to the nearest char boundary of `text`.
fn floor_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Cuts snippets for one collection: its analyzer and scratch space, reused across hits.
pub struct Highlighter {
    analyzer: TextAnalyzer,
    /// The analyzer only splits, drops long tokens, lower-cases and folds (no stemming).
    ascii_fast_path: bool,
    /// The current token, lower-cased (fast path).
    lowered: String,
    /// The text, lower-cased (fast path, searched for the query's terms).
    folded: Vec<u8>,
}

impl Highlighter {
    pub fn new(language: SearchLanguage) -> Highlighter {
        Highlighter {
            analyzer: schema::analyzer(language),
            ascii_fast_path: matches!(language, SearchLanguage::Default),
            lowered: String::new(),
            folded: Vec::new(),
        }
    }

    /// The snippet of `text` for `matcher`, or `None` when nothing in it matches.
    pub fn snippet(&mut self, matcher: &Matcher, text: &str) -> Option<String> {
        let hits = self.matching_tokens(matcher, text);
        cut(text, hits)
    }

    /// Where to start looking in ASCII `text`: a token start no matching token precedes
    /// (`None`: no token matches). Without typo terms a match is a token that equals or
    /// starts with an exact or prefix term once lower-cased, so the first such token starts
    /// at or after the first token start where some term occurs in the lower-cased text;
    /// those are found by substring search instead of splitting every token before them.
    fn first_candidate(&mut self, matcher: &Matcher, text: &str) -> Option<usize> {
        let terms = || matcher.exact.iter().chain(&matcher.prefixes);
        if !matcher.fuzzy.is_empty() || terms().any(String::is_empty) {
            return Some(0);
        }
        self.folded.clear();
        self.folded.extend_from_slice(text.as_bytes());
        self.folded.make_ascii_lowercase();
        let haystack = self.folded.as_slice();
        let mut first: Option<usize> = None;
        for term in terms() {
            let limit = first.unwrap_or(haystack.len());
            let token_start = memmem::find_iter(haystack, term.as_bytes())
                .take_while(|&at| at < limit)
                .find(|&at| at == 0 || !haystack[at - 1].is_ascii_alphanumeric());
            if token_start.is_some() {
                first = token_start;
            }
        }
        first
    }

    /// Byte ranges of the matching tokens of `text`, in order, up to the end of the snippet
    /// (tokens starting more than the snippet's length in bytes after the first match are
    /// not examined: `SNIPPET_CHARS * 4`, or `SNIPPET_CHARS` for ASCII).
    fn matching_tokens(&mut self, matcher: &Matcher, text: &str) -> Vec<(usize, usize)> {
        let mut hits: Vec<(usize, usize)> = Vec::new();
        if self.ascii_fast_path && text.is_ascii() {
            // In ASCII a char is a byte, so the snippet ends at most `SNIPPET_CHARS` bytes
            // after the first match: later tokens cannot be marked.
            let Some(mut at) = self.first_candidate(matcher, text) else {
                return hits;
            };
            let bytes = text.as_bytes();
            while at < bytes.len() {
                if !bytes[at].is_ascii_alphanumeric() {
                    at += 1;
                    continue;
                }
                let from = at;
                while at < bytes.len() && bytes[at].is_ascii_alphanumeric() {
                    at += 1;
                }
                if let Some(&(first, _)) = hits.first() {
                    if from > first + SNIPPET_CHARS {
                        break;
                    }
                }
                if at - from >= schema::MAX_TOKEN_BYTES {
                    continue;
                }
                self.lowered.clear();
                self.lowered.push_str(&text[from..at]);
                self.lowered.make_ascii_lowercase();
                if matcher.matches(&self.lowered) {
                    hits.push((from, at));
                }
            }
            return hits;
        }
        // Tokens are checked in place (no copies), and only up to the end of the snippet.
        let mut stream = self.analyzer.token_stream(text);
        while stream.advance() {
            let token = stream.token();
            if let Some(&(first, _)) = hits.first() {
                if token.offset_from > first + SNIPPET_CHARS * 4 {
                    break;
                }
            }
            if matcher.matches(&token.text) {
                hits.push((token.offset_from, token.offset_to));
            }
        }
        hits
    }
}

/// The snippet around the first of `hits` (matching byte ranges of `text`, in order).
fn cut(text: &str, hits: Vec<(usize, usize)>) -> Option<String> {
    let &(first, _) = hits.first()?;
    // Start a little before the first match, at a word start.
    let mut start = floor_boundary(text, first.saturating_sub(BEFORE * 4));
    let before_chars = text[start..first].chars().count();
    if before_chars > BEFORE {
        let skip: usize = text[start..first].chars().take(before_chars - BEFORE).map(char::len_utf8).sum();
        start += skip;
    }
    if start > 0 {
        if let Some(space) = text[start..first].find(char::is_whitespace) {
            start += space + 1;
        }
    }
    let end_chars: usize = text[start..].chars().take(SNIPPET_CHARS).map(char::len_utf8).sum();
    let mut end = start + end_chars;
    if end < text.len() {
        if let Some(space) = text[first.max(start)..end].rfind(char::is_whitespace) {
            end = first.max(start) + space;
        }
    }
    let mut out = String::with_capacity((end - start) + 32);
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (from, to) in hits.into_iter().filter(|(from, to)| *from >= start && *to <= end) {
        escape_into(&mut out, &text[at..from]);
        out.push_str("<mark>");
        escape_into(&mut out, &text[from..to]);
        out.push_str("</mark>");
        at = to;
    }
    escape_into(&mut out, &text[at..end]);
    if end < text.len() {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn matcher(words: &[&str]) -> Matcher {
        Matcher { exact: words.iter().map(|w| w.to_string()).collect(), ..Matcher::default() }
    }

    fn through_analyzer() -> Highlighter {
        Highlighter { ascii_fast_path: false, ..Highlighter::new(SearchLanguage::Default) }
    }

    #[test]
    fn marks_matches_and_escapes_the_rest() {
        let mut h = Highlighter::new(SearchLanguage::Default);
        let got = h.snippet(&matcher(&["rust"]), "I <3 Rust & rust.").expect("matches");
        assert_eq!(got, "I &lt;3 <mark>Rust</mark> &amp; <mark>rust</mark>.");
    }

    #[test]
    fn accented_text_matches_its_folded_form() {
        let mut h = Highlighter::new(SearchLanguage::Default);
        let got = h.snippet(&matcher(&["cafe"]), "Un Café, un cafe.").expect("matches");
        assert_eq!(got, "Un <mark>Café</mark>, un <mark>cafe</mark>.");
    }

    #[test]
    fn english_marks_by_stem() {
        let mut h = Highlighter::new(SearchLanguage::English);
        let got = h.snippet(&matcher(&["run"]), "Running runs").expect("matches");
        assert_eq!(got, "<mark>Running</mark> <mark>runs</mark>");
    }

    #[test]
    fn long_text_is_cut_around_the_first_match() {
        let mut h = Highlighter::new(SearchLanguage::Default);
        let text = format!("{} needle {}", "word ".repeat(100), "tail ".repeat(100));
        let got = h.snippet(&matcher(&["needle"]), &text).expect("matches");
        assert!(got.starts_with('…') && got.ends_with('…'), "{got}");
        assert!(got.contains("<mark>needle</mark>"));
        assert!(got.chars().count() < 300);
    }

    #[test]
    fn no_match_no_snippet() {
        let mut h = Highlighter::new(SearchLanguage::Default);
        assert_eq!(h.snippet(&matcher(&["absent"]), "some text"), None);
    }

    #[test]
    fn tokens_of_the_length_limit_are_not_marked() {
        let long = "a".repeat(schema::MAX_TOKEN_BYTES);
        let m = Matcher { prefixes: vec!["a".into()], ..Matcher::default() };
        let text = format!("{long} a");
        assert_eq!(
            Highlighter::new(SearchLanguage::Default).snippet(&m, &text),
            through_analyzer().snippet(&m, &text)
        );
    }

    proptest! {
        /// The in-place ASCII scan finds exactly what the analyzer finds.
        #[test]
        fn ascii_fast_path_agrees_with_the_analyzer(
            text in "([a-dA-D0-9]{1,70}|[ ,.<&'\"-]{1,3}){0,120}",
            exact in prop::collection::vec("[a-d]{1,3}", 0..3),
            prefixes in prop::collection::vec("[a-d0-9]{1,2}", 0..2),
            fuzzy in prop::collection::vec(("[a-d]{5,7}", 1u8..3), 0..2),
        ) {
            let m = Matcher { exact, fuzzy, prefixes };
            let fast = Highlighter::new(SearchLanguage::Default).snippet(&m, &text);
            prop_assert_eq!(fast, through_analyzer().snippet(&m, &text));
        }
    }
}
