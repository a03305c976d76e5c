//! `POST /jobs` bodies: a [`JobSpec`] in JSON, plus the legacy limits
//! `maxCPU` (percent of one core), `maxMemory` (MiB) and `maxIOBPS` (bytes
//! per second, read and write), which are HTTP-only and answered in the
//! units the request used.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use jobcell::{JobSpec, Limits};

use crate::error::ApiError;

/// 1024 cores.
const MAX_CPU: u64 = 102_400;
/// 4 PiB, in MiB.
const MAX_MEMORY_MIB: u64 = 1 << 32;
/// 4 PiB per second.
const MAX_IO_BPS: u64 = 1 << 52;

/// The legacy limits as the request gave them (0: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Legacy {
    #[serde(rename = "maxCPU", skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    #[serde(rename = "maxIOBPS", skip_serializing_if = "Option::is_none")]
    pub max_iobps: Option<u64>,
}

impl Legacy {
    pub fn is_empty(&self) -> bool {
        *self == Legacy::default()
    }

    /// Rewrites a record's `limits` object in the units the request used.
    pub fn present(&self, limits: &mut Map<String, Value>) {
        if let Some(v) = self.max_cpu {
            limits.remove("cpu_percent");
            limits.insert("maxCPU".into(), v.into());
        }
        if let Some(v) = self.max_memory {
            limits.remove("memory");
            limits.insert("maxMemory".into(), v.into());
        }
        if let Some(v) = self.max_iobps {
            limits.remove("io_read_bps");
            limits.remove("io_write_bps");
            limits.insert("maxIOBPS".into(), v.into());
        }
    }
}

/// A parsed request: the job, and the legacy fields it used.
#[derive(Debug)]
pub struct JobRequest {
    pub spec: JobSpec,
    pub legacy: Legacy,
}

/// Parses a body; limits the request leaves out take `defaults`, and a limit
/// given as 0 means none (not even the default).
pub fn parse(body: &[u8], defaults: &Limits) -> Result<JobRequest, ApiError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| ApiError::bad("body", "expected a JSON object"))?;
    let mut legacy = Legacy::default();
    let mut zero = Vec::new();
    // (serde would take an array for a struct, by position.)
    if obj
        .get("limits")
        .is_some_and(|l| !l.is_object() && !l.is_null())
    {
        return Err(ApiError::bad("limits", "must be an object"));
    }
    if let Some(Value::Object(l)) = obj.get_mut("limits") {
        legacy.max_cpu = take(l, "maxCPU", MAX_CPU)?;
        legacy.max_memory = take(l, "maxMemory", MAX_MEMORY_MIB)?;
        legacy.max_iobps = take(l, "maxIOBPS", MAX_IO_BPS)?;
        for (name, v) in [
            ("maxCPU", legacy.max_cpu),
            ("maxMemory", legacy.max_memory),
            ("maxIOBPS", legacy.max_iobps),
        ] {
            if v == Some(0) {
                zero.push(name.to_string());
            }
        }
        for (legacy_name, given, names) in [
            ("maxCPU", legacy.max_cpu, &["cpu_percent"][..]),
            ("maxMemory", legacy.max_memory, &["memory"][..]),
            (
                "maxIOBPS",
                legacy.max_iobps,
                &["io_read_bps", "io_write_bps"][..],
            ),
        ] {
            if given.is_some() {
                if let Some(n) = names.iter().find(|n| l.contains_key(**n)) {
                    return Err(ApiError::bad(
                        &format!("limits.{legacy_name}"),
                        format!("give {legacy_name} or {n}, not both"),
                    ));
                }
            }
        }
        // 0 is "no limit" over HTTP; the library has no such value.
        // (memory_swap 0 is a limit: no swap.)
        l.retain(|k, v| {
            let is_zero = k != "memory_swap" && (v.as_u64() == Some(0) || v.as_f64() == Some(0.0));
            if is_zero {
                zero.push(k.clone());
            }
            !is_zero
        });
    }
    let mut spec: JobSpec = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        ApiError::bad(&field(&path, &inner), inner)
    })?;
    if spec.command.is_empty() {
        return Err(ApiError::bad("command", "must not be empty"));
    }
    let l = &mut spec.limits;
    if let Some(c) = legacy.max_cpu.filter(|c| *c > 0) {
        l.cpu_percent = Some(c as u32);
    }
    if let Some(m) = legacy.max_memory.filter(|m| *m > 0) {
        l.memory = Some(m << 20);
    }
    if let Some(io) = legacy.max_iobps.filter(|io| *io > 0) {
        (l.io_read_bps, l.io_write_bps) = (Some(io), Some(io));
    }
    let unlimited = |names: &[&str]| names.iter().any(|n| zero.iter().any(|z| z == n));
    let d = defaults;
    macro_rules! default {
        ($field:ident, $($name:literal),+) => {
            if l.$field.is_none() && !unlimited(&[$($name),+]) {
                l.$field = d.$field.clone();
            }
        };
    }
    default!(memory, "memory", "maxMemory");
    default!(memory_swap, "memory_swap");
    default!(cpu_percent, "cpu_percent", "maxCPU");
    default!(cpus, "cpus");
    default!(pids, "pids");
    default!(io_read_bps, "io_read_bps", "maxIOBPS");
    default!(io_write_bps, "io_write_bps", "maxIOBPS");
    default!(io_read_iops, "io_read_iops");
    default!(io_write_iops, "io_write_iops");
    default!(wall_time, "wall_time_ms");
    default!(cpu_time, "cpu_time_ms");
    default!(output_bytes, "output_bytes");
    // A swap default without memory makes no sense for this job.
    if l.memory.is_none() {
        l.memory_swap = None;
    }
    spec.validate()
        .map_err(|e| crate::error::submit_error(&e, &legacy))?;
    Ok(JobRequest { spec, legacy })
}

/// A legacy limit: a whole number from 0 to `max`, removed from `l`.
fn take(l: &mut Map<String, Value>, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
    let field = format!("limits.{name}");
    match l.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let absurd = || ApiError::bad(&field, format!("{n} is absurd: at most {max}"));
            if let Some(v) = n.as_u64() {
                return if v > max { Err(absurd()) } else { Ok(Some(v)) };
            }
            let f = n.as_f64().unwrap_or(0.0);
            if f < 0.0 {
                Err(ApiError::bad(
                    &field,
                    "must not be negative (0 means no limit)",
                ))
            } else if f > max as f64 {
                Err(absurd())
            } else {
                Err(ApiError::bad(&field, "must be a whole number"))
            }
        }
        Some(_) => Err(ApiError::bad(&field, "must be a number")),
    }
}

/// The field a serde error is about: its path, plus the field it names when
/// the error is about an unknown or missing one.
fn field(path: &str, message: &str) -> String {
    let named = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| message.split_once(p))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    let path = if path == "." { "" } else { path };
    match named {
        Some(n) if path.is_empty() => n.to_string(),
        Some(n) if !path.ends_with(n) => format!("{path}.{n}"),
        _ if path.is_empty() => "body".to_string(),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ok(body: &str) -> JobRequest {
        parse(body.as_bytes(), &Limits::default()).unwrap()
    }

    fn bad(body: &str) -> ApiError {
        match parse(body.as_bytes(), &Limits::default()) {
            Ok(j) => panic!("{body} was taken: {j:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_demo_request_in_its_units() {
        let j = ok(
            r#"{"command":"echo","args":["Hello, isolated world!"],"limits":{"maxCPU":50,"maxMemory":128,"maxIOBPS":1048576}}"#,
        );
        assert_eq!(j.spec.command, "echo");
        assert_eq!(j.spec.limits.cpu_percent, Some(50));
        assert_eq!(j.spec.limits.memory, Some(128 << 20));
        assert_eq!(j.spec.limits.io_read_bps, Some(1_048_576));
        assert_eq!(j.spec.limits.io_write_bps, Some(1_048_576));
        let mut shown = serde_json::to_value(&j.spec.limits).unwrap();
        j.legacy.present(shown.as_object_mut().unwrap());
        assert_eq!(
            shown,
            serde_json::json!({"maxCPU": 50, "maxMemory": 128, "maxIOBPS": 1048576})
        );
    }

    #[test]
    fn defaults_fill_what_is_left_out_and_zero_means_none() {
        let d = Limits {
            cpu_percent: Some(20),
            memory: Some(1 << 30),
            io_read_bps: Some(5),
            io_write_bps: Some(5),
            wall_time: Some(Duration::from_secs(60)),
            pids: Some(10),
            ..Default::default()
        };
        let j = parse(
            br#"{"command":"x","limits":{"maxCPU":0,"pids":0,"wall_time_ms":1500}}"#,
            &d,
        )
        .unwrap();
        assert_eq!(
            j.spec.limits.cpu_percent, None,
            "0: none, even with a default"
        );
        assert_eq!(j.spec.limits.pids, None);
        assert_eq!(j.spec.limits.memory, Some(1 << 30), "absent: the default");
        assert_eq!(j.spec.limits.io_read_bps, Some(5));
        assert_eq!(j.spec.limits.wall_time, Some(Duration::from_millis(1500)));
        assert_eq!(j.legacy.max_cpu, Some(0));
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            ("{", "body"),
            ("[]", "body"),
            ("{}", "command"),
            (r#"{"command":""}"#, "command"),
            (r#"{"command":42}"#, "command"),
            (r#"{"command":"x","colour":"red"}"#, "colour"),
            (r#"{"command":"x","args":"a b"}"#, "args"),
            (r#"{"command":"x","args":["a",1]}"#, "args[1]"),
            (r#"{"command":"x","env":{"A":1}}"#, "env.A"),
            (r#"{"command":"x","stdin":{"base64":"%%"}}"#, "stdin"),
            (r#"{"command":"x","files":{"../x":"y"}}"#, "files"),
            (r#"{"command":"x","collect":["/etc/passwd"]}"#, "collect"),
            (r#"{"command":"x","cwd":"rel"}"#, "cwd"),
            (
                r#"{"command":"x","limits":{"maxDisk":1}}"#,
                "limits.maxDisk",
            ),
            (r#"{"command":"x","limits":{"pids":"many"}}"#, "limits.pids"),
            (r#"{"command":"x","limits":{"maxCPU":-5}}"#, "limits.maxCPU"),
            (
                r#"{"command":"x","limits":{"maxMemory":1e30}}"#,
                "limits.maxMemory",
            ),
            (
                r#"{"command":"x","limits":{"maxIOBPS":1.5}}"#,
                "limits.maxIOBPS",
            ),
            (
                r#"{"command":"x","limits":{"maxIOBPS":"1M"}}"#,
                "limits.maxIOBPS",
            ),
            (
                r#"{"command":"x","limits":{"maxMemory":1,"memory":2}}"#,
                "limits.maxMemory",
            ),
            (r#"{"command":"x","limits":[]}"#, "limits"),
        ];
        for (body, want) in cases {
            let e = bad(body);
            assert_eq!(e.field.as_deref(), Some(want), "{body}: {e:?}");
            assert_eq!(e.status, 400, "{body}");
        }
        assert!(bad(r#"{"command":"x","limits":{"maxCPU":-5}}"#)
            .message
            .contains("negative"));
        assert!(bad(r#"{"command":"x","limits":{"maxCPU":1000000}}"#)
            .message
            .contains("absurd"));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse(s.as_bytes(), &Limits::default());
        }

        #[test]
        fn legacy_limits_within_bounds_are_taken(cpu in 1u64..=MAX_CPU, mib in 1u64..=MAX_MEMORY_MIB, io in 1u64..=MAX_IO_BPS) {
            let body = format!(r#"{{"command":"x","limits":{{"maxCPU":{cpu},"maxMemory":{mib},"maxIOBPS":{io}}}}}"#);
            let j = parse(body.as_bytes(), &Limits::default()).unwrap();
            prop_assert_eq!(j.spec.limits.cpu_percent, Some(cpu as u32));
            prop_assert_eq!(j.spec.limits.memory, Some(mib << 20));
            prop_assert_eq!(j.spec.limits.io_write_bps, Some(io));
            let mut shown = serde_json::to_value(&j.spec.limits).unwrap();
            j.legacy.present(shown.as_object_mut().unwrap());
            prop_assert_eq!(&shown["maxMemory"], &serde_json::json!(mib));
            prop_assert!(shown.get("memory").is_none());
        }
    }
}
