//! A connection to Redis that comes back: every operation is retried through
//! an outage, reconnecting with capped exponential backoff.

use std::time::{Duration, Instant};

use redis::{Connection, RedisError, Value};

use crate::error::{Error, Result};

/// How long one connection attempt, and one reply, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause after a failure; doubled up to the link's cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// A lazily (re)connected Redis connection.
pub(crate) struct Link {
    client: redis::Client,
    url: String,
    con: Option<Connection>,
    backoff_cap: Duration,
    /// When the current connection was made (`None` while there is none).
    pub(crate) connected_since: Option<Instant>,
    /// Reconnections made after a failure, for the figures.
    pub(crate) reconnects: u64,
}

/// What a failed operation means for the caller.
pub(crate) enum Fault {
    /// The connection failed or Redis is not serving yet: reconnect and retry.
    Transient(RedisError),
    /// Redis refused the command: retrying will not help.
    Refused(RedisError),
}

pub(crate) fn classify(e: RedisError) -> Fault {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "BUSY")
        );
    if transient {
        Fault::Transient(e)
    } else {
        Fault::Refused(e)
    }
}

pub(crate) fn refused(op: &'static str, e: RedisError) -> Error {
    Error::Redis {
        op,
        reason: e.to_string(),
    }
}

impl Link {
    /// A link to `url`; nothing is connected yet. A malformed URL is an error now.
    pub(crate) fn new(url: &str, backoff_cap: Duration) -> Result<Link> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidSetting {
            name: "redis url",
            value: url.into(),
            reason: e.to_string(),
        })?;
        Ok(Link {
            client,
            url: url.into(),
            con: None,
            backoff_cap,
            connected_since: None,
            reconnects: 0,
        })
    }

    fn connect(&mut self) -> Result<&mut Connection, RedisError> {
        if self.con.is_none() {
            let con = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
            con.set_read_timeout(Some(IO_TIMEOUT))?;
            con.set_write_timeout(Some(IO_TIMEOUT))?;
            self.con = Some(con);
            self.connected_since = Some(Instant::now());
        }
        Ok(self.con.as_mut().expect("just connected"))
    }

    /// Runs `f` once on a live connection; a transient failure drops the
    /// connection (the next call reconnects).
    pub(crate) fn try_once<T>(
        &mut self,
        f: &mut dyn FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Fault> {
        let r = match self.connect() {
            Ok(con) => f(con),
            Err(e) => Err(e),
        };
        r.map_err(|e| {
            let fault = classify(e);
            if matches!(fault, Fault::Transient(_)) && self.con.take().is_some() {
                self.connected_since = None;
                self.reconnects += 1;
            }
            fault
        })
    }

    /// Runs `f` until it succeeds, Redis refuses it, `deadline` passes or
    /// `give_up` says so, pausing with backoff between attempts.
    pub(crate) fn run<T>(
        &mut self,
        op: &'static str,
        deadline: Option<Instant>,
        give_up: &dyn Fn() -> bool,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut pause = FIRST_BACKOFF;
        loop {
            match self.try_once(&mut f) {
                Ok(v) => return Ok(v),
                Err(Fault::Refused(e)) => return Err(refused(op, e)),
                Err(Fault::Transient(e)) => {
                    let late = deadline.is_some_and(|d| Instant::now() + pause > d);
                    if late || give_up() {
                        return Err(Error::RedisUnavailable {
                            url: redacted(&self.url),
                            op,
                            waited: start.elapsed(),
                            reason: e.to_string(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.backoff_cap);
                }
            }
        }
    }
}

/// The URL without its password, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Reading replies.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => text(v)?.parse().ok(),
    }
}

pub(crate) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// A flat field/value list (or a map) as pairs.
pub(crate) fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        _ => items(v)
            .chunks(2)
            .filter_map(|c| match c {
                [k, v] => Some((text(k)?, v)),
                _ => None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redacted("redis://:s3cret@db:6379/0"), "redis://…@db:6379/0");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn field_lists_become_pairs() {
        let v = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Int(1),
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"x".to_vec()),
        ]);
        let p = pairs(&v);
        assert_eq!(p.len(), 2);
        assert_eq!(int(p[0].1), Some(1));
        assert_eq!(text(p[1].1).as_deref(), Some("x"));
    }
}
