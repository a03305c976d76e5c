//! How times and durations are written in JSON: serde helpers shared by
//! types of several layers (limits, usage, job records). A leaf module, so
//! that each layer's types can name it without knowing the layers above.

pub(crate) mod time_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        s.serialize_u64(ms)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::deserialize(d)?))
    }
}

pub(crate) mod opt_time_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::time_ms::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

/// Durations in JSON as whole milliseconds, rounded down (measurements:
/// `wall_time_ms`). Reading also takes the fractional milliseconds that
/// development builds before 0.1.0 wrote (`21.456279000000002`), since
/// state directories outlive upgrades.
pub(crate) mod dur_ms {
    use serde::{de, Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_u64(Millis)
    }

    /// Whole or fractional milliseconds, never negative.
    struct Millis;

    impl de::Visitor<'_> for Millis {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative number of milliseconds")
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(ms))
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
            u64::try_from(ms)
                .map(Duration::from_millis)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(ms), &self))
        }

        fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Duration, E> {
            if ms < 0.0 {
                return Err(E::invalid_value(de::Unexpected::Float(ms), &self));
            }
            Duration::try_from_secs_f64(ms / 1000.0)
                .map_err(|_| E::invalid_value(de::Unexpected::Float(ms), &self))
        }
    }
}

/// `Option<Duration>` as [`dur_ms`] does it; `null` is `None`.
pub(crate) mod opt_dur_ms {
    use serde::{de, Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::dur_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(OptMillis)
    }

    struct OptMillis;

    impl<'de> de::Visitor<'de> for OptMillis {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative number of milliseconds, or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::dur_ms::deserialize(d).map(Some)
        }
    }
}

/// Limits' durations (`wall_time_ms`, `cpu_time_ms`) as [`opt_dur_ms`]
/// does it, but rounded up: a limit written out and read back is never
/// tighter than the one set, nor zero.
pub(crate) mod opt_limit_ms {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::opt_dur_ms::deserialize(d)
    }
}

pub(crate) mod dur_us {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
