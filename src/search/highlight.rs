//! Highlighted snippets: the part of a field's text around the first match, HTML-escaped,
//! with every matching word wrapped in `<mark>…</mark>`.

use tantivy::tokenizer::{TextAnalyzer, TokenStream};

use super::query::Matcher;

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

/// The snippet of `text` for `matcher`, or `None` when nothing in it matches.
pub fn snippet(analyzer: &mut TextAnalyzer, matcher: &Matcher, text: &str) -> Option<String> {
    // Tokens are checked in place (no copies), and only up to the end of the snippet.
    let mut hits: Vec<(usize, usize)> = Vec::new();
    let mut stream = analyzer.token_stream(text);
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
    use super::*;
    use crate::records::collection::SearchLanguage;
    use crate::search::schema;

    fn matcher(words: &[&str]) -> Matcher {
        Matcher { exact: words.iter().map(|w| w.to_string()).collect(), ..Matcher::default() }
    }

    #[test]
    fn marks_matches_and_escapes_the_rest() {
        let mut analyzer = schema::analyzer(SearchLanguage::Default);
        let got = snippet(&mut analyzer, &matcher(&["rust"]), "I <3 Rust & rust.").expect("matches");
        assert_eq!(got, "I &lt;3 <mark>Rust</mark> &amp; <mark>rust</mark>.");
    }

    #[test]
    fn long_text_is_cut_around_the_first_match() {
        let mut analyzer = schema::analyzer(SearchLanguage::Default);
        let text = format!("{} needle {}", "word ".repeat(100), "tail ".repeat(100));
        let got = snippet(&mut analyzer, &matcher(&["needle"]), &text).expect("matches");
        assert!(got.starts_with('…') && got.ends_with('…'), "{got}");
        assert!(got.contains("<mark>needle</mark>"));
        assert!(got.chars().count() < 300);
    }

    #[test]
    fn no_match_no_snippet() {
        let mut analyzer = schema::analyzer(SearchLanguage::Default);
        assert_eq!(snippet(&mut analyzer, &matcher(&["absent"]), "some text"), None);
    }
}
