//! The `Range` header: a pure parser from header text and a body length to
//! the bytes to send (RFC 9110 §14).
//!
//! One range is honoured (`a-b`, `a-`, `-n`). A header with several ranges,
//! another unit or a syntax error is ignored and the whole body is sent,
//! as the RFC allows; only a well-formed range that misses the body is 416.

/// What to send for a body of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200.
    Full,
    /// Send `start..end` (end exclusive, never empty, within the length) with 206.
    Partial { start: u64, end: u64 },
    /// The range lies outside the body: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses a `Range` header value against a body of `len` bytes.
///
/// ```
/// use trainbox::http::range::{parse_range, RangeRequest};
/// assert_eq!(parse_range("bytes=10-", 100), RangeRequest::Partial { start: 10, end: 100 });
/// assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Partial { start: 90, end: 100 });
/// assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
/// ```
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (parse_u64(first), parse_u64(last)) {
        // `-n`: the last n bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: len.saturating_sub(suffix),
                    end: len,
                }
            }
        }
        // `a-` and `a-b`.
        (Some(start), last_pos) if last_pos.is_some() || last.is_empty() => match last_pos {
            Some(last_pos) if last_pos < start => RangeRequest::Full,
            _ if start >= len => RangeRequest::Unsatisfiable,
            Some(last_pos) => RangeRequest::Partial {
                start,
                end: last_pos.saturating_add(1).min(len),
            },
            None => RangeRequest::Partial { start, end: len },
        },
        _ => RangeRequest::Full,
    }
}

/// Digits only: no sign, no spaces inside, no overflow.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;
    use proptest::prelude::*;

    #[test]
    fn the_three_forms() {
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 10 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-1", 100),
            Partial {
                start: 99,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Partial { start: 0, end: 100 }
        );
        assert_eq!(
            parse_range("bytes=50-5000", 100),
            Partial {
                start: 50,
                end: 100
            }
        );
        assert_eq!(
            parse_range(" Bytes = 5 - 6 ", 100),
            Partial { start: 5, end: 7 }
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn ignored_headers_mean_the_whole_body() {
        for header in [
            "",
            "bytes",
            "items=0-5",
            "bytes=0-5,10-20",
            "bytes=9-5",
            "bytes=-",
            "bytes=a-b",
            "bytes=+5-6",
            "bytes=5",
            "bytes=99999999999999999999999-",
            "bytes=1-2-3",
        ] {
            assert_eq!(parse_range(header, 100), Full, "{header:?}");
        }
    }

    proptest! {
        /// Whatever is accepted lies within the body and is not empty.
        #[test]
        fn accepted_ranges_lie_within_the_length(header in "\\PC{0,30}", len in 0u64..1 << 40) {
            if let Partial { start, end } = parse_range(&header, len) {
                prop_assert!(start < end && end <= len);
            }
        }

        #[test]
        fn well_formed_ranges_round_trip(a in 0u64..1000, b in 0u64..1000, len in 1u64..1000) {
            let (a, b) = (a.min(b), a.max(b));
            let expected = if a >= len { Unsatisfiable } else { Partial { start: a, end: (b + 1).min(len) } };
            prop_assert_eq!(parse_range(&format!("bytes={a}-{b}"), len), expected);
        }
    }
}
