//! Parsing sizes (`256M`), durations (`1.5s`) and CPU lists (`0-3,5`) as
//! people write them on command lines, in environment variables and in limits.

use std::fmt;
use std::time::Duration;

/// Why a size or duration could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitError {
    input: String,
    reason: String,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for UnitError {}

fn err(input: &str, reason: impl Into<String>) -> UnitError {
    UnitError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// Splits `"1.5Gi"` into its number and its unit.
fn split(s: &str) -> (&str, &str) {
    let i = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..i], s[i..].trim())
}

/// A decimal number without sign or exponent, as (integer part, fraction digits).
fn number(input: &str, n: &str) -> Result<(u128, String), UnitError> {
    if n.is_empty() {
        return Err(err(input, "expected a number"));
    }
    let (int, frac) = n.split_once('.').unwrap_or((n, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(err(input, "malformed number"));
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err(input, "number too large"))?
    };
    if frac.len() > 9 {
        return Err(err(input, "at most 9 decimal places"));
    }
    Ok((int, frac.to_string()))
}

/// `int.frac * mul`, exactly, failing on overflow of `u64`.
fn scale(
    input: &str,
    (int, frac): (u128, String),
    mul: u128,
    what: &str,
) -> Result<u64, UnitError> {
    let mut v = int
        .checked_mul(mul)
        .ok_or_else(|| err(input, format!("{what} too large")))?;
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| err(input, "malformed number"))?;
        let denom = 10u128.pow(frac.len() as u32);
        v += digits * mul / denom;
    }
    u64::try_from(v).map_err(|_| err(input, format!("{what} too large")))
}

/// Parses a size in bytes: a number with an optional unit. `K`, `M`, `G`, `T`
/// (and `KiB`, `MiB`, … or `KB`, `MB`, …) are powers of 1024, as memory limits
/// are usually meant; a bare number is bytes. Case is ignored.
///
/// ```
/// use jobcell::units::parse_size;
/// assert_eq!(parse_size("512M").unwrap(), 512 << 20);
/// assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
/// assert_eq!(parse_size("4096").unwrap(), 4096);
/// assert!(parse_size("12 parsecs").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let (n, unit) = split(t);
    let num = number(s, n)?;
    let mul: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(err(
                s,
                format!("unknown size unit {other:?} (use K, M, G or T)"),
            ))
        }
    };
    scale(s, num, mul, "size")
}

/// Parses a duration: a number with a unit `ns`, `us`, `ms`, `s`, `m`, `h`
/// (a bare number is seconds).
///
/// ```
/// use jobcell::units::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
/// assert!(parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let (n, unit) = split(t);
    let num = number(s, n)?;
    let ns_per: u128 = match unit.to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" | "sec" | "secs" => 1_000_000_000,
        "m" | "min" | "mins" => 60_000_000_000,
        "h" | "hr" | "hours" => 3_600_000_000_000,
        other => {
            return Err(err(
                s,
                format!("unknown time unit {other:?} (use ms, s, m or h)"),
            ))
        }
    };
    scale(s, num, ns_per, "duration").map(Duration::from_nanos)
}

/// Formats bytes for people: `1.5 MiB`.
///
/// ```
/// assert_eq!(jobcell::units::format_size(1536 * 1024), "1.5 MiB");
/// assert_eq!(jobcell::units::format_size(12), "12 B");
/// ```
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a CPU list (`"0-3,5,7-8"`) into sorted, unique CPU numbers.
pub(crate) fn parse_cpu_list(s: &str) -> std::result::Result<Vec<u32>, String> {
    const MAX_CPU: u32 = 8191;
    let mut cpus = Vec::new();
    if s.trim().is_empty() {
        return Err("the CPU list is empty".into());
    }
    for part in s.trim().split(',') {
        let part = part.trim();
        let num = |t: &str| -> std::result::Result<u32, String> {
            let n: u32 = t
                .parse()
                .map_err(|_| format!("{t:?} is not a CPU number"))?;
            if n > MAX_CPU {
                return Err(format!("CPU {n} is beyond {MAX_CPU}"));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a.trim())?, num(b.trim())?);
                if a > b {
                    return Err(format!("range {part:?} runs backwards"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size(" 64 MiB ").unwrap(), 64 << 20);
        assert_eq!(parse_size("0.5K").unwrap(), 512);
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.2.3M").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("-5M").is_err());
        let e = parse_size("5X").unwrap_err().to_string();
        assert!(e.contains("unknown size unit"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5,1").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list(" 3 ").unwrap(), vec![3]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("0-").is_err());
        assert!(parse_cpu_list("99999").is_err());
    }

    proptest! {
        #[test]
        fn size_roundtrip(n in 0u64..1 << 40, unit in 0usize..5) {
            let (suffix, mul) = [("", 1u64), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)][unit];
            let s = format!("{n}{suffix}");
            match n.checked_mul(mul) {
                Some(v) => prop_assert_eq!(parse_size(&s).unwrap(), v),
                None => prop_assert!(parse_size(&s).is_err()),
            }
        }

        #[test]
        fn duration_roundtrip(ms in 0u64..10_000_000) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")).unwrap(), Duration::from_millis(ms));
            let secs = format!("{}.{:03}s", ms / 1000, ms % 1000);
            prop_assert_eq!(parse_duration(&secs).unwrap(), Duration::from_millis(ms));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }
    }

    proptest! {
        #[test]
        fn cpu_list_roundtrip(set in proptest::collection::btree_set(0u32..64, 1..20)) {
            let s = set.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
            let parsed = parse_cpu_list(&s).unwrap();
            prop_assert_eq!(parsed, set.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn cpu_list_never_panics(s in "[0-9,\\- ]{0,16}") {
            let _ = parse_cpu_list(&s);
        }
    }
}
