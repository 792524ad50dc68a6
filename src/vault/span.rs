//! Spans of time as people write them in `quire.toml` and mission briefs: a whole number and a
//! unit, `250ms`, `30s`, `10m`, `2h`, `7d`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time, written `<whole number><unit>` with the unit `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// Reads `text`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || {
            format!(
                "`{}` is not a span of time: write a whole number and a unit, as in `250ms`, `30s`, `10m`, `2h` or `7d`",
                text.escape_debug()
            )
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        // Beyond a century is certainly a mistake, and keeps every sum of spans far from overflow.
        let total = n.checked_mul(ms).filter(|&t| t <= 100 * 365 * 86_400_000);
        total
            .map(|t| Self(Duration::from_millis(t)))
            .ok_or_else(|| {
                format!(
                    "`{}` is longer than quire waits for anything (100 years)",
                    text.escape_debug()
                )
            })
    }

    /// The span as a [`Duration`].
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_and_write_in_their_largest_whole_unit() {
        for (text, ms, shown) in [
            ("250ms", 250, "250ms"),
            ("30s", 30_000, "30s"),
            ("90s", 90_000, "90s"),
            ("10m", 600_000, "10m"),
            ("2h", 7_200_000, "2h"),
            ("7d", 604_800_000, "7d"),
            ("1000ms", 1_000, "1s"),
            ("0s", 0, "0ms"),
        ] {
            let s = Span::parse(text).unwrap();
            assert_eq!(s.0, Duration::from_millis(ms), "{text}");
            assert_eq!(s.to_string(), shown);
        }
    }

    #[test]
    fn what_is_not_a_span_is_refused_saying_what_is() {
        for bad in [
            "",
            "10",
            "m",
            "1.5h",
            "-1s",
            "10 minutes",
            "10M",
            "5w",
            "99999999999999d",
        ] {
            let e = Span::parse(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }
}
