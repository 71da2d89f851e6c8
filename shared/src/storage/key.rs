//! Object keys. A key is relative to the store's root, `/`-separated, and
//! never escapes it: no `..` or `.` segments, no leading `/`, no empty
//! segments, no backslashes and no control characters. Strings that come from
//! users (channel logins, titles) go through [`safe_segment`] before they are
//! joined into a key.

use std::fmt;

use super::StorageError;

/// Names starting with this are the file backend's in-flight writes.
pub(crate) const RESERVED_TMP: &str = ".colony-tmp";
const MAX_KEY_LEN: usize = 1024;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validate a key. Hostile keys get a typed [`StorageError::InvalidKey`].
    pub fn parse(raw: &str) -> Result<Self, StorageError> {
        let refuse = |reason: &'static str| StorageError::InvalidKey { key: raw.escape_debug().to_string(), reason };
        if raw.is_empty() {
            return Err(refuse("it is empty"));
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(refuse("it is longer than 1024 bytes"));
        }
        if raw.starts_with('/') {
            return Err(refuse("absolute paths are not keys"));
        }
        if raw.chars().any(char::is_control) {
            return Err(refuse("it contains control characters"));
        }
        if raw.contains('\\') {
            return Err(refuse("it contains a backslash"));
        }
        for segment in raw.split('/') {
            match segment {
                "" => return Err(refuse("it has an empty path segment")),
                "." | ".." => return Err(refuse("it has a '.' or '..' segment")),
                s if s.starts_with(RESERVED_TMP) => {
                    return Err(refuse("names starting with '.colony-tmp' are reserved"));
                }
                _ => {}
            }
        }
        Ok(Self(raw.to_owned()))
    }

    /// Append one or more `/`-separated segments, validating the result.
    pub fn join(&self, rest: &str) -> Result<Self, StorageError> {
        Self::parse(&format!("{}/{}", self.0, rest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

/// Turn any user string into one safe key segment: ASCII letters, digits,
/// `-`, `_` and `.` survive (lowercased), everything else becomes `_`, runs of
/// dots cannot form `..`, and the result is never empty.
pub fn safe_segment(user: &str) -> String {
    let mut out = String::with_capacity(user.len().min(64));
    for c in user.chars().take(64) {
        let c = c.to_ascii_lowercase();
        let keep =
            c.is_ascii_alphanumeric() || c == '-' || c == '_' || (c == '.' && !out.ends_with('.') && !out.is_empty());
        out.push(if keep { c } else { '_' });
    }
    let trimmed = out.trim_end_matches('.');
    if trimmed.is_empty() { "_".to_owned() } else { trimmed.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\u{7f}b",
            ".colony-tmp/x",
            "a/.colony-tmp-1234",
        ] {
            assert!(matches!(ObjectKey::parse(bad), Err(StorageError::InvalidKey { .. })), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ordinary_keys_are_kept() {
        for good in ["a", "channels/foo/12/e0/000001.ts", "x/.hidden", "a/b.c/d..e"] {
            assert_eq!(ObjectKey::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn safe_segment_never_escapes() {
        for user in ["..", "../../etc", "/abs", "Ünïcode Näme", "", "a\0b", "..."] {
            let seg = safe_segment(user);
            assert!(ObjectKey::parse(&seg).is_ok(), "{user:?} -> {seg:?}");
            assert!(!seg.contains('/'), "{seg}");
        }
        assert_eq!(safe_segment("Some_Streamer-99"), "some_streamer-99");
    }
}
