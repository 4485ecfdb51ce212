//! Time and ids. `GT_NOW` (an RFC 3339 time) fixes the clock so test output is
//! stable; ids stay unique under a fixed clock because they also carry a
//! per-process random part and a counter.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

/// The current time, or `GT_NOW` when set.
pub fn now() -> Timestamp {
    if let Some(t) =
        std::env::var_os("GT_NOW").and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
    {
        return t;
    }
    Timestamp::now()
}

/// RFC 3339 in UTC with the precision the value has: `2026-11-25T09:00:32.123456Z`.
pub fn format(t: Timestamp) -> String {
    t.to_string()
}

/// [`now`] formatted.
pub fn now_string() -> String {
    format(now())
}

/// Parse an RFC 3339 time (any offset) as written in gastown and beads files.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// The duration environment variable `name` sets (e.g. `500ms`, `10s`), or
/// `default` when it is unset or empty; a bad value names the variable.
pub fn env_duration(
    name: &str,
    default: std::time::Duration,
) -> crate::error::Result<std::time::Duration> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => parse_duration(&v).map_err(|e| e.context(name)),
        _ => Ok(default),
    }
}

/// Parse a duration like `10m`, `90s`, `1h30m`, `500ms` or `0s` (as in config
/// files and flags).
pub fn parse_duration(s: &str) -> crate::error::Result<std::time::Duration> {
    let d: jiff::SignedDuration = s.parse().map_err(|e| {
        crate::error::Error::invalid(format!(
            "invalid duration {s:?} ({e}); use e.g. 30s, 10m, 1h"
        ))
    })?;
    std::time::Duration::try_from(d).map_err(|_| {
        crate::error::Error::invalid(format!("invalid duration {s:?}: must not be negative"))
    })
}

/// A duration setting as written in a config file (`"30s"`, `"10m"`): parsed
/// once when the file is read, so a bad value is refused there, naming the
/// file, line and column; written back as the text it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    text: String,
    value: std::time::Duration,
}

impl Interval {
    pub fn get(&self) -> std::time::Duration {
        self.value
    }
}

impl std::str::FromStr for Interval {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Interval> {
        Ok(Interval {
            value: parse_duration(s)?,
            text: s.to_string(),
        })
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: crate::error::Error| serde::de::Error::custom(e.message()))
    }
}

const B32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

static SEQ: AtomicU64 = AtomicU64::new(0);

fn process_random() -> u64 {
    use std::sync::OnceLock;
    static R: OnceLock<u64> = OnceLock::new();
    *R.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    })
}

fn push_b32(out: &mut String, mut v: u64, digits: usize) {
    let mut buf = [0u8; 13];
    for slot in buf[..digits].iter_mut().rev() {
        *slot = B32[(v & 31) as usize];
        v >>= 5;
    }
    out.extend(buf[..digits].iter().map(|&b| b as char));
}

/// A new unique id that sorts by creation time: `<prefix>-<10 chars of ms since
/// epoch><8 random chars>`, Crockford base32 (lowercase).
pub fn new_id(prefix: &str) -> String {
    let ms = now().as_millisecond().max(0) as u64;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(process_random());
    h.write_u64(seq);
    let rand = h.finish() ^ process_random().rotate_left(17) ^ seq;
    let mut out = String::with_capacity(prefix.len() + 19);
    out.push_str(prefix);
    out.push('-');
    push_b32(&mut out, ms, 10);
    push_b32(&mut out, rand, 8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_sorted() {
        let a = new_id("msg");
        let b = new_id("msg");
        assert_ne!(a, b);
        assert!(a.starts_with("msg-") && a.len() == 4 + 18, "{a}");
        assert!(a[4..].bytes().all(|c| B32.contains(&c)));
        // The time part sorts: a time 1 ms later sorts later whatever the random part.
        let mut s1 = String::new();
        push_b32(&mut s1, 1_000, 10);
        let mut s2 = String::new();
        push_b32(&mut s2, 1_001, 10);
        assert!(s1 < s2, "{s1} {s2}");
    }

    #[test]
    fn parses_beads_offsets() {
        let t = parse("2025-12-25T00:59:03.667211-08:00").unwrap();
        assert_eq!(format(t), "2025-12-25T08:59:03.667211Z");
    }
}
