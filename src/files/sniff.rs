//! Content types from the bytes themselves (never from the client's `Content-Type` or the
//! file name), which types may be shown inline, and safe file-name extensions.

/// The content type of a file, judged from its first bytes (at least the first 512 when
/// the file is that long).
pub fn sniff(head: &[u8]) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b\x08", "application/gzip"),
        (b"BM", "image/bmp"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
        (b"fLaC", "audio/flac"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),
        (b"\x00\x00\x01\x00", "image/x-icon"),
        (b"\x7fELF", "application/octet-stream"),
    ];
    if head.len() >= 12 && &head[0..4] == b"RIFF" {
        match &head[8..12] {
            b"WEBP" => return "image/webp",
            b"WAVE" => return "audio/wav",
            b"AVI " => return "video/x-msvideo",
            _ => {}
        }
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return match &head[8..12] {
            b"avif" | b"avis" => "image/avif",
            b"heic" | b"heix" | b"mif1" => "image/heic",
            b"qt  " => "video/quicktime",
            _ => "video/mp4",
        };
    }
    for (magic, kind) in SIGNATURES {
        if head.starts_with(magic) {
            return kind;
        }
    }
    sniff_text(head)
}

/// Text formats: markup that a browser would execute is recognised so it is never inline.
fn sniff_text(head: &[u8]) -> &'static str {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    // A multi-byte character may be cut at the end of the sniffed window.
    let valid = match std::str::from_utf8(text) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&text[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let Some(s) = valid else {
        return "application/octet-stream";
    };
    if s.chars().any(|c| c == '\0' || (c.is_control() && !c.is_whitespace() && c != '\x1b')) {
        return "application/octet-stream";
    }
    let lower = s.trim_start().to_ascii_lowercase();
    if lower.contains("<svg") {
        return "image/svg+xml";
    }
    for tag in [
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<script",
        "<iframe",
        "<h1",
        "<div",
        "<p>",
        "<a ",
        "<?xml",
    ] {
        if lower.starts_with(tag) {
            return if tag == "<?xml" { "application/xml" } else { "text/html" };
        }
    }
    if (lower.starts_with('{') || lower.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(s).is_ok()
    {
        return "application/json";
    }
    "text/plain"
}

/// Content types a browser may render inline from our origin without running anything.
/// SVG and HTML (and anything unknown) are always downloads.
pub fn is_safe_inline(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/bmp"
            | "image/avif"
            | "image/x-icon"
            | "application/pdf"
            | "text/plain"
            | "audio/ogg"
            | "audio/mpeg"
            | "audio/wav"
            | "audio/flac"
            | "video/mp4"
            | "video/webm"
    )
}

/// The image types variants are produced for.
pub fn is_thumbable(content_type: &str) -> bool {
    matches!(content_type, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// A file extension for content of this type, when the client's name has none.
pub fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "text/plain" => "txt",
        "text/html" => "html",
        "application/zip" => "zip",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_signature() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n rest"), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), "image/jpeg");
        assert_eq!(sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"GIF89a..."), "image/gif");
    }

    #[test]
    fn markup_is_never_plain_text() {
        assert_eq!(sniff(b"  <svg xmlns='http://www.w3.org/2000/svg'></svg>"), "image/svg+xml");
        assert_eq!(sniff(b"<?xml version='1.0'?><svg></svg>"), "image/svg+xml");
        assert_eq!(sniff(b"<!DOCTYPE html><html></html>"), "text/html");
        assert_eq!(sniff(b"<script>alert(1)</script>"), "text/html");
        assert!(!is_safe_inline("image/svg+xml"));
        assert!(!is_safe_inline("text/html"));
    }

    #[test]
    fn text_json_and_binary() {
        assert_eq!(sniff(b"hello world\n"), "text/plain");
        assert_eq!(sniff(br#"{"a": 1}"#), "application/json");
        assert_eq!(sniff(b"\x00\x01\x02binary"), "application/octet-stream");
        assert_eq!(sniff("héllo".as_bytes()), "text/plain");
    }
}
