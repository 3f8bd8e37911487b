//! Text from the outside world made safe for one line of a log: a file
//! name or a request target with a newline or an escape byte in it must not
//! forge a log line or recolour a terminal.

use std::borrow::Cow;

/// `text` with control characters written as escapes (`\n`, `\x1b`, ...),
/// and backslashes doubled so an escape cannot be faked either.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A client-chosen string fit to echo in a `detail`: short, printable ASCII.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_escapes() {
        assert_eq!(escape_controls("model.safetensors"), "model.safetensors");
        assert_eq!(
            escape_controls("evil\n2026-01-01 INFO access: GET / 200"),
            "evil\\n2026-01-01 INFO access: GET / 200"
        );
        assert_eq!(escape_controls("\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(
            escape_controls("a\\nb"),
            "a\\\\nb",
            "a real backslash is not an escape"
        );
        assert_eq!(escape_controls("\u{85}x"), "\\x85x");
    }

    proptest::proptest! {
        #[test]
        fn one_line_always(text in ".*") {
            let escaped = escape_controls(&text);
            proptest::prop_assert!(!escaped.chars().any(char::is_control));
        }
    }
}
