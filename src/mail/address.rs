//! Parsing of everything that ends up in a mail header: addresses, display names, subjects.
//!
//! Header injection is refused here, before anything is queued: a CR or LF (or any other
//! control character) in a header value is an error naming the field, never silently
//! stripped. Addresses are plain ASCII `local@domain` (RFC 5321 dot-atoms; no quoted local
//! parts, no SMTPUTF8).

use crate::util::invalid::Invalid;

/// Longest address accepted (RFC 5321 path limit minus the angle brackets).
const MAX_ADDRESS: usize = 254;
/// Longest display name or subject accepted (RFC 5322 line limit).
const MAX_HEADER_TEXT: usize = 998;

/// Characters allowed in a dot-atom local part besides letters, digits and dots.
const ATEXT_SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";

/// Checks an email address and returns it trimmed. `field` names the input in the error.
pub fn parse_address(field: &str, raw: &str) -> Result<String, Invalid> {
    let value = raw.trim();
    if has_control(value) {
        return Err(header_injection(field));
    }
    if value.is_empty() {
        return Err(Invalid::of(field, "validation_required", "Cannot be blank."));
    }
    let invalid = || Invalid::of(field, "validation_invalid_email", "Must be a valid email address.");
    if value.len() > MAX_ADDRESS {
        return Err(invalid());
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(invalid());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || ATEXT_SPECIALS.contains(&b));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if local_ok && domain_ok {
        Ok(value.to_string())
    } else {
        Err(invalid())
    }
}

/// Checks a display name or subject: no control characters (CR/LF would inject headers),
/// at most 998 bytes. Non-ASCII text is fine (it is encoded when the message is built).
pub fn parse_header_text(field: &str, raw: &str) -> Result<String, Invalid> {
    if has_control(raw) {
        return Err(header_injection(field));
    }
    if raw.len() > MAX_HEADER_TEXT {
        return Err(Invalid::of(
            field,
            "validation_max_text_constraint",
            format!("Must be at most {MAX_HEADER_TEXT} bytes."),
        ));
    }
    Ok(raw.trim().to_string())
}

fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

fn header_injection(field: &str) -> Invalid {
    Invalid::of(
        field,
        "validation_header_injection",
        "Must not contain line breaks or other control characters.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_parse() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org", "x_y-z@localhost", "o'neil@example.com"] {
            assert_eq!(parse_address("to", ok).expect(ok), ok);
        }
        assert_eq!(parse_address("to", "  a@b.co ").expect("trimmed"), "a@b.co");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "plain",
            "@b.co",
            "a@",
            "a@@b.co",
            ".a@b.co",
            "a.@b.co",
            "a..b@c.co",
            "a b@c.co",
            "a@-b.co",
            "a@b..co",
            "é@b.co",
            "<a@b.co>",
        ] {
            assert!(parse_address("to", bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn line_breaks_in_any_header_value_are_refused_as_injection() {
        for bad in ["a@b.co\r\nBcc: x@y.z", "a@b.co\nBcc: x@y.z"] {
            let err = parse_address("to", bad).expect_err("injection");
            assert_eq!(err.fields["to"].code, "validation_header_injection", "{err:?}");
        }
        let err = parse_header_text("subject", "Hi\r\nBcc: victim@example.com").expect_err("injection");
        assert_eq!(err.fields["subject"].code, "validation_header_injection", "{err:?}");
        assert!(parse_header_text("toName", "Zoë \"Z\" Ødegaard").is_ok());
    }
}
