//! Bearer tokens and the roles they grant, from `--token-file`.
//!
//! One a line, `read:` or `control:` in front, optionally a label after it
//! (`read:alice:<token>`) that the download audit records instead of the
//! token; systemd's `LoadCredential=`
//! puts the file in `$CREDENTIALS_DIRECTORY`. Presented tokens are compared
//! with every configured one in constant time, and never printed.

use std::fmt;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Control,
}

/// The configured tokens.
pub struct Tokens {
    entries: Vec<(Role, String, Vec<u8>)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a token.
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

/// Shortest token accepted: 16 characters (about 96 bits if random).
pub const TOKEN_MIN_LEN: usize = 16;

impl Tokens {
    /// Parses a token file: `read:<token>` or `control:<token>` a line;
    /// blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (role, rest) = match line.split_once(':') {
                Some(("read", rest)) => (Role::Read, rest),
                Some(("control", rest)) => (Role::Control, rest),
                _ => {
                    return Err(format!(
                        "line {}: expected read:[label:]<token> or control:[label:]<token>",
                        number + 1
                    ));
                }
            };
            // Tokens hold no ':', so a second one ends a label.
            let (label, token) = match rest.split_once(':') {
                Some((label, token)) => {
                    let fine = |b: u8| b.is_ascii_alphanumeric() || b"._-@".contains(&b);
                    if label.is_empty() || label.len() > 64 || !label.bytes().all(fine) {
                        return Err(format!(
                            "line {}: a label is 1 to 64 of A-Z a-z 0-9 . _ - @",
                            number + 1
                        ));
                    }
                    (label.to_owned(), token)
                }
                None => (unlabelled(rest), rest),
            };
            // Cookie-safe characters (hex, base64, base64url, UUIDs).
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b);
            if token.len() < TOKEN_MIN_LEN || !token.bytes().all(allowed) {
                return Err(format!(
                    "line {}: a token must be at least {TOKEN_MIN_LEN} characters of A-Z a-z 0-9 . _ ~ + / = -",
                    number + 1
                ));
            }
            entries.push((role, label, token.as_bytes().to_vec()));
        }
        if entries.is_empty() {
            return Err("no tokens in the file".into());
        }
        Ok(Tokens { entries })
    }

    /// The strongest role any configured token equal to `presented` has.
    /// Every token is compared, each in time independent of where it differs.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        self.identify(presented).map(|(role, _)| role)
    }

    /// The strongest role a token equal to `presented` has, and that
    /// token's label (the audit's name for whoever presented it).
    pub fn identify(&self, presented: &[u8]) -> Option<(Role, &str)> {
        let mut found: Option<(Role, &str)> = None;
        for (token_role, label, token) in &self.entries {
            if constant_time_eq(presented, token) && found.is_none_or(|(r, _)| *token_role > r) {
                found = Some((*token_role, label));
            }
        }
        found
    }
}

/// The label of a token without one: a short digest of it, which names
/// the token in the audit without giving it away.
fn unlabelled(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("token-{hex}")
}

/// Equality whose running time depends only on the lengths, not on the
/// position of the first difference.
fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != secret.len());
    for (i, s) in secret.iter().enumerate() {
        diff |= s ^ presented.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "# tokens\nread:reader-token-0123456789\n\ncontrol:controller-token-0123456789\n";

    #[test]
    fn labels_name_tokens_for_the_audit() {
        let t = Tokens::parse(
            "read:alice:alice-token-0123456789\ncontrol:ci@box-1:ci-token-0123456789\nread:anon-token-0123456789\n",
        )
        .unwrap();
        assert_eq!(
            t.identify(b"alice-token-0123456789"),
            Some((Role::Read, "alice"))
        );
        assert_eq!(
            t.identify(b"ci-token-0123456789"),
            Some((Role::Control, "ci@box-1"))
        );
        let (_, anon) = t.identify(b"anon-token-0123456789").unwrap();
        assert!(
            anon.starts_with("token-") && anon.len() == 14 && !anon.contains("anon"),
            "{anon}"
        );
        for bad in [
            "read::alice-token-0123456789",
            "read:al ice:alice-token-0123456789",
            &format!("read:{}:alice-token-0123456789", "x".repeat(65)),
        ] {
            assert!(Tokens::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_files() {
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.role_of(b"reader-token-0123456789"), Some(Role::Read));
        assert_eq!(
            t.role_of(b"controller-token-0123456789"),
            Some(Role::Control)
        );
        assert_eq!(t.role_of(b"controller-token-012345678"), None);
        assert_eq!(t.role_of(b""), None);
        assert!(format!("{t:?}").contains("2 configured") && !format!("{t:?}").contains("reader"));
        for bad in [
            "",
            "# only a comment",
            "admin:0123456789abcdef",
            "read:short",
            "read:has a space in it",
        ] {
            assert!(Tokens::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
