//! Bytes in a job description: JSON text when they are UTF-8, base64 otherwise.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes of a [`JobSpec`](crate::JobSpec) (standard input, a file): written
/// in JSON as a string when they are text, or as `{"base64": "…"}` (RFC 4648,
/// standard alphabet, padded) when they are not.
///
/// ```
/// use jobcell::Content;
///
/// let text: Content = serde_json::from_str(r#""1 2\n""#)?;
/// let binary: Content = serde_json::from_str(r#"{"base64": "AP8="}"#)?;
/// assert_eq!(text.as_bytes(), b"1 2\n");
/// assert_eq!(binary.as_bytes(), [0x00, 0xff]);
/// // Each is written back the way that carries it exactly.
/// assert_eq!(serde_json::to_string(&binary)?, r#"{"base64":"AP8="}"#);
/// assert_eq!(serde_json::to_string(&text)?, r#""1 2\n""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Content(Arc<[u8]>);

impl Content {
    /// Content holding `bytes`.
    ///
    /// ```
    /// assert_eq!(jobcell::Content::new("hi").len(), 2);
    /// ```
    pub fn new(bytes: impl AsRef<[u8]>) -> Content {
        Content(bytes.as_ref().into())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn shared(&self) -> Arc<[u8]> {
        self.0.clone()
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 64 => write!(f, "Content({s:?})"),
            _ => write!(f, "Content({} bytes)", self.0.len()),
        }
    }
}

impl<T: AsRef<[u8]>> From<T> for Content {
    fn from(bytes: T) -> Content {
        Content::new(bytes)
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("base64", &encode(&self.0))?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a string, or {"base64": "…"}"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::new(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Content, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "base64" {
                        return Err(de::Error::unknown_field(&key, &["base64"]));
                    }
                    if out.is_some() {
                        return Err(de::Error::duplicate_field("base64"));
                    }
                    let text: String = map.next_value()?;
                    out = Some(decode(&text).map_err(de::Error::custom)?);
                }
                out.map(Content::new)
                    .ok_or_else(|| de::Error::missing_field("base64"))
            }
        }
        d.deserialize_any(V)
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with padding (RFC 4648 §4).
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 (RFC 4648 §4): padding optional, no whitespace, and no
/// bits left over in the last symbol (so every text decodes from one value).
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let body = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(bytes);
    if bytes.len() != body.len() && !bytes.len().is_multiple_of(4) {
        return Err("invalid base64: padding on an incomplete group".into());
    }
    if body.len() % 4 == 1 {
        return Err("invalid base64: the length is impossible".into());
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, &c) in body.iter().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("invalid base64: byte {c:#04x} at {i}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err("invalid base64: the last symbol has bits left over".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
            assert_eq!(
                decode(coded.trim_end_matches('=')).unwrap(),
                plain.as_bytes()
            );
        }
        for bad in ["Zg=", "Z", "Zm9v!", "Zh==", "Zm 9v", "=", "Zm9v===="] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_forms_and_errors() {
        let c: Content = serde_json::from_str(r#"{"base64":"aGk="}"#).unwrap();
        assert_eq!(c.as_bytes(), b"hi");
        for bad in [
            r#"{"b64":"aGk="}"#,
            r#"{}"#,
            r#"{"base64":"%"}"#,
            "42",
            "[1]",
        ] {
            let e = serde_json::from_str::<Content>(bad)
                .unwrap_err()
                .to_string();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = serde_json::from_str::<Content>(r#"{"base64":"a%"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid base64"), "{e}");
    }

    proptest! {
        #[test]
        fn agrees_with_the_base64_crate(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let ours = encode(&data);
            prop_assert_eq!(&ours, &base64::engine::general_purpose::STANDARD.encode(&data));
            prop_assert_eq!(decode(&ours).unwrap(), data.clone());
            let c = Content::new(&data);
            let json = serde_json::to_string(&c).unwrap();
            prop_assert_eq!(serde_json::from_str::<Content>(&json).unwrap(), c);
        }

        #[test]
        fn decoding_never_panics_and_accepts_only_canonical_text(s in "[A-Za-z0-9+/=]{0,40}") {
            if let Ok(bytes) = decode(&s) {
                let again = encode(&bytes);
                prop_assert_eq!(again.trim_end_matches('='), s.trim_end_matches('='));
            }
        }
    }
}
