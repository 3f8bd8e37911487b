//! Percent-encoding as URLs and forms use it: decoding for the router and
//! the login form, encoding for the targets `Route::to_request` renders.
//! Pure; the round trip is a property test.

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, as in form
/// queries). `None` on a malformed escape.
pub fn decode(raw: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex_value(*bytes.next()?)?;
                let lo = hex_value(*bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    Some(out)
}

/// Decodes a form or query value (`%XX`, `+` as space) to UTF-8 text.
pub fn form_decode(raw: &[u8]) -> Option<String> {
    String::from_utf8(decode(raw, true)?).ok()
}

/// Encodes `text` for a path segment or a query value: every byte but the
/// unreserved ones (RFC 3986 §2.3) as `%XX`.
pub fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_and_plus() {
        assert_eq!(form_decode(b"a+b%3Dc"), Some("a b=c".to_owned()));
        assert_eq!(decode(b"a+b", false), Some(b"a+b".to_vec()));
        assert_eq!(decode(b"%zz", false), None);
        assert_eq!(decode(b"%4", false), None);
        assert_eq!(encode("epoch=3 step/1"), "epoch%3D3%20step%2F1");
    }

    proptest! {
        #[test]
        fn encoding_round_trips(text in "\\PC{0,40}") {
            let encoded = encode(&text);
            prop_assert_eq!(form_decode(encoded.as_bytes()), Some(text.clone()));
            prop_assert_eq!(decode(encoded.as_bytes(), false), Some(text.into_bytes()));
        }
    }
}
