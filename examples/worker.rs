//! `worker`: the original design's HTTP job service, on [`jobcell::Worker`].
//!
//! ```text
//! cargo run --example worker          # listens on 127.0.0.1:8080
//! curl -X POST http://localhost:8080/jobs -H "Content-Type: application/json" \
//!   -d '{"command":"echo","args":["Hello, isolated world!"],"limits":{"maxCPU":50,"maxMemory":128,"maxIOBPS":1048576}}'
//! curl -N http://localhost:8080/jobs/{jobId}/stream
//! ```
//!
//! Routes:
//!
//! | route                      | answer                                                    |
//! |----------------------------|-----------------------------------------------------------|
//! | `POST /jobs`               | 201 and the job's record (`id`, `state`, …)               |
//! | `GET /jobs`                | every job's record, oldest first                          |
//! | `GET /jobs/{id}`           | the job's record                                          |
//! | `GET /jobs/{id}/stream`    | its output from the first byte, chunked, until it ends    |
//! | `POST /jobs/{id}/stop`     | stops it (SIGTERM, SIGKILL after 5 s); 409 if it has ended |
//! | `GET /jobs/{id}/usage`     | live CPU, memory, IO and pids usage from its cgroup        |
//!
//! A job is `{"command": "...", "args": [...], "limits": {"maxCPU": 50,
//! "maxMemory": 128, "maxIOBPS": 1048576}}`: `maxCPU` is percent of one core,
//! `maxMemory` MiB, `maxIOBPS` bytes per second for reads and for writes
//! (0 = unlimited; an absent limit takes the default from the environment,
//! else the untrusted default). Jobs run in a `Sandbox::untrusted()` cell
//! (minimal read-only root, loopback-only network, uid 1000, and
//! `Limits::conservative()`: 512 MiB of memory, 256 processes, 60 s of wall
//! time, 16 MiB of output, 64 MiB per file); `command` is looked up on
//! `PATH` inside the cell.
//!
//! Configuration, from the environment:
//!
//! | variable               | default                                  |
//! |------------------------|------------------------------------------|
//! | `WORKER_ADDR`          | `127.0.0.1:8080` (port 0: any free port)  |
//! | `WORKER_TOKEN`         | none; when set, every request needs `Authorization: Bearer <token>`; required for a non-loopback address |
//! | `WORKER_STATE_DIR`     | `$XDG_STATE_HOME/jobcell`, else `~/.local/state/jobcell` |
//! | `MAX_JOBS`             | 64 running at once; more wait in a queue |
//! | `DEFAULT_CPU_LIMIT`    | none (percent of one core, e.g. `50`)    |
//! | `DEFAULT_MEMORY_LIMIT` | 512M, the untrusted default (e.g. `1G`)  |
//! | `DEFAULT_IO_LIMIT`     | none (bytes per second, e.g. `10M`)      |
//! | `WORKER_LOG_LEVEL`     | `info` (`error`, `warn`, `info`, `debug`) |
//!
//! Logs go to stderr as `key=value` lines. Ctrl-C (SIGINT) or SIGTERM stops
//! accepting requests, stops the running jobs, writes their records and
//! exits; a second signal exits at once.

use std::collections::BTreeSet;
use std::fmt::{self, Display};
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jobcell::units::parse_size;
use jobcell::{Command, Error, Limits, Sandbox, Worker, WorkerConfig};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

// ---------------------------------------------------------------------------
// Logging: levelled key=value lines on stderr.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" | "trace" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LOG_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Logs `msg` with `fields` at `level`, as one line.
fn log(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) {
    if level as u8 > LOG_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    eprintln!("{}", log_line(SystemTime::now(), level, msg, fields));
}

fn log_line(t: SystemTime, level: Level, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut line = format!("ts={} level={} msg={}", utc(t), level.name(), quote(msg));
    for (k, v) in fields {
        line.push_str(&format!(" {k}={}", quote(&v.to_string())));
    }
    line
}

/// A value as is when it is a plain word, else in double quotes with escapes.
fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        return v.to_string();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// RFC 3339 UTC with milliseconds.
fn utc(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

// ---------------------------------------------------------------------------
// Configuration from the environment.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Config {
    addr: String,
    token: Option<String>,
    state_dir: PathBuf,
    max_jobs: usize,
    defaults: Defaults,
    level: Level,
}

/// Limits a job gets when its request does not name them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Defaults {
    cpu_percent: Option<u32>,
    memory: Option<u64>,
    io_bps: Option<u64>,
}

const DEFAULT_MAX_JOBS: usize = 64;

impl Config {
    /// Reads the configuration through `get` (the environment, or a map in tests).
    fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let level = match var("WORKER_LOG_LEVEL") {
            None => Level::Info,
            Some(v) => Level::parse(&v).ok_or_else(|| {
                format!("WORKER_LOG_LEVEL={v:?}: expected error, warn, info or debug")
            })?,
        };
        let max_jobs = match var("MAX_JOBS") {
            None => DEFAULT_MAX_JOBS,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("MAX_JOBS={v:?}: expected a whole number above 0")),
            },
        };
        let cpu_percent = match var("DEFAULT_CPU_LIMIT") {
            None => None,
            Some(v) => match v.trim().trim_end_matches('%').parse::<u32>() {
                Ok(0) => None,
                Ok(n) if n <= MAX_CPU => Some(n),
                _ => {
                    return Err(format!(
                        "DEFAULT_CPU_LIMIT={v:?}: expected percent of one core, 1 to {MAX_CPU} (0: none)"
                    ))
                }
            },
        };
        let size = |k: &str| -> Result<Option<u64>, String> {
            match var(k) {
                None => Ok(None),
                Some(v) => match parse_size(&v) {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some(n)),
                    Err(e) => Err(format!("{k}: {e}")),
                },
            }
        };
        let memory = size("DEFAULT_MEMORY_LIMIT")?;
        let io_bps = size("DEFAULT_IO_LIMIT")?;
        let state_dir = match var("WORKER_STATE_DIR") {
            Some(d) => PathBuf::from(d),
            None => match (var("XDG_STATE_HOME"), var("HOME")) {
                (Some(x), _) => PathBuf::from(x).join("jobcell"),
                (None, Some(h)) => PathBuf::from(h).join(".local/state/jobcell"),
                (None, None) => return Err("set WORKER_STATE_DIR (there is no HOME)".into()),
            },
        };
        Ok(Config {
            addr: var("WORKER_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            token: var("WORKER_TOKEN"),
            state_dir,
            max_jobs,
            defaults: Defaults {
                cpu_percent,
                memory,
                io_bps,
            },
            level,
        })
    }

    /// The addresses to listen on; refuses a non-loopback one without a token.
    fn listen_addr(&self) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("WORKER_ADDR={:?}: {e}", self.addr))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| format!("WORKER_ADDR={:?}: no address", self.addr))?;
        if self.token.is_none() && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(format!(
                "refusing to listen on {first} without WORKER_TOKEN: anyone who can reach it \
                 could run commands here. Set WORKER_TOKEN, or listen on 127.0.0.1"
            ));
        }
        Ok(first)
    }
}

// ---------------------------------------------------------------------------
// Requests.

/// 1024 cores.
const MAX_CPU: u32 = 102_400;
/// 4 PiB, in MiB.
const MAX_MEMORY_MIB: u64 = 1 << 32;
/// 4 PiB per second.
const MAX_IO_BPS: u64 = 1 << 52;
/// The largest request body read.
const MAX_BODY: u64 = 1 << 20;

/// An error answer: status, message and (for 400) the field at fault.
#[derive(Debug, PartialEq, Eq)]
struct ApiError {
    status: u16,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    fn body(&self) -> Value {
        match &self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        }
    }
}

/// A parsed `POST /jobs` body.
#[derive(Debug, PartialEq, Eq)]
struct JobRequest {
    command: String,
    args: Vec<String>,
    limits: Limits,
}

/// A limit of the request: `Ok(None)` absent or null (take the default),
/// `Ok(Some(0))` unlimited.
fn limit(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    let field = format!("limits.{name}");
    match obj.get(name) {
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
                    "must not be negative (0 means unlimited)",
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

fn parse_job(body: &[u8], d: &Defaults) -> Result<JobRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad("body", "expected a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["command", "args", "limits"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(
            k,
            "unknown field (expected command, args, limits)",
        ));
    }
    let command = match obj.get("command") {
        None | Some(Value::Null) => return Err(ApiError::bad("command", "missing")),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(ApiError::bad("command", "must be a non-empty string")),
    };
    let args = match obj.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::bad(&format!("args[{i}]"), "must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad("args", "must be an array of strings")),
    };
    let empty = serde_json::Map::new();
    let l = match obj.get("limits") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(l)) => l,
        Some(_) => return Err(ApiError::bad("limits", "must be an object")),
    };
    if let Some(k) = l
        .keys()
        .find(|k| !["maxCPU", "maxMemory", "maxIOBPS"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(
            &format!("limits.{k}"),
            "unknown limit (expected maxCPU, maxMemory, maxIOBPS)",
        ));
    }
    // 0 is unlimited; absent takes the default.
    let pick = |given: Option<u64>, default: Option<u64>| match given {
        Some(0) => None,
        Some(v) => Some(v),
        None => default,
    };
    let cpu = pick(
        limit(l, "maxCPU", u64::from(MAX_CPU))?,
        d.cpu_percent.map(u64::from),
    );
    // Requests come from strangers: what no one set is the untrusted default.
    let untrusted = Limits::conservative();
    let memory = match limit(l, "maxMemory", MAX_MEMORY_MIB)? {
        Some(0) => None,
        Some(mib) => Some(mib << 20),
        None => d.memory.or(untrusted.memory),
    };
    let io = pick(limit(l, "maxIOBPS", MAX_IO_BPS)?, d.io_bps);
    Ok(JobRequest {
        command,
        args,
        limits: Limits {
            cpu_percent: cpu.map(|c| c as u32),
            memory,
            io_read_bps: io,
            io_write_bps: io,
            ..untrusted
        },
    })
}

/// The request field a submit error is about.
fn submit_error(e: &Error) -> ApiError {
    let field = match e {
        Error::EmptyProgram | Error::ProgramNotFound { .. } => Some("command".to_string()),
        Error::NulByte { what, .. } if what.contains("argument") => Some("args".to_string()),
        Error::NulByte { .. } => Some("command".to_string()),
        Error::InvalidLimit { name, .. } => Some(
            match *name {
                "memory" => "limits.maxMemory",
                "cpu_percent" => "limits.maxCPU",
                n if n.starts_with("io_") => "limits.maxIOBPS",
                _ => "limits",
            }
            .to_string(),
        ),
        _ => None,
    };
    match (field, e) {
        (Some(f), _) => ApiError::bad(&f, e.to_string()),
        (None, Error::Refused { .. }) => ApiError::new(503, e.to_string()),
        (None, _) => ApiError::new(500, e.to_string()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Jobs,
    Job(&'a str),
    Stream(&'a str),
    Stop(&'a str),
    Usage(&'a str),
}

impl Route<'_> {
    fn parse(url: &str) -> Option<Route<'_>> {
        let path = url.split(['?', '#']).next().unwrap_or("");
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut it = path.strip_prefix("/jobs")?.split('/');
        if it.next() != Some("") {
            return None; // "/jobsX"
        }
        let r = match (it.next(), it.next(), it.next()) {
            (None, _, _) => Route::Jobs,
            (Some(id), None, _) if !id.is_empty() => Route::Job(id),
            (Some(id), Some("stream"), None) if !id.is_empty() => Route::Stream(id),
            (Some(id), Some("stop"), None) if !id.is_empty() => Route::Stop(id),
            (Some(id), Some("usage"), None) if !id.is_empty() => Route::Usage(id),
            _ => return None,
        };
        Some(r)
    }

    fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Jobs => &[Method::Get, Method::Post],
            Route::Stop(_) => &[Method::Post],
            _ => &[Method::Get],
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request, token: &Option<String>) -> bool {
    let Some(token) = token else { return true };
    req.headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .filter_map(|h| h.value.as_str().strip_prefix("Bearer "))
        .any(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

// ---------------------------------------------------------------------------
// The service.

struct Service {
    worker: Worker,
    config: Config,
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

fn reply(req: Request, status: u16, body: &Value, extra: &[Header]) -> u16 {
    let mut resp = Response::from_string(format!("{body}\n"))
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"));
    for h in extra {
        resp.add_header(h.clone());
    }
    if let Err(e) = req.respond(resp) {
        log(Level::Debug, "client went away", &[("error", &e)]);
    }
    status
}

fn fail(req: Request, e: &ApiError) -> u16 {
    let extra = if e.status == 401 {
        vec![header("WWW-Authenticate", "Bearer realm=\"jobcell\"")]
    } else {
        Vec::new()
    };
    reply(req, e.status, &e.body(), &extra)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(404, format!("no job with id {id:?}"))
}

impl Service {
    fn handle(self: &Arc<Self>, req: Request) {
        let started = Instant::now();
        let method = req.method().clone();
        let url = req.url().to_string();
        // A stream answers from its own thread and logs there.
        if let Some(status) = self.route(req, &method, &url) {
            log(
                if status >= 500 {
                    Level::Error
                } else {
                    Level::Debug
                },
                "request",
                &[
                    ("method", &method),
                    ("path", &url),
                    ("status", &status),
                    (
                        "ms",
                        &format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
                    ),
                ],
            );
        }
    }

    /// Answers `req` and returns the status; `None` when a stream thread took it over.
    fn route(self: &Arc<Self>, mut req: Request, method: &Method, url: &str) -> Option<u16> {
        if !authorized(&req, &self.config.token) {
            log(
                Level::Warn,
                "unauthorized request",
                &[("method", method), ("path", &url)],
            );
            return Some(fail(
                req,
                &ApiError::new(401, "missing or wrong bearer token"),
            ));
        }
        let Some(route) = Route::parse(url) else {
            return Some(fail(req, &ApiError::new(404, format!("no route {url}"))));
        };
        if !route.allowed().contains(method) {
            let allow = route
                .allowed()
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let e = ApiError::new(
                405,
                format!("{method} is not allowed here (allowed: {allow})"),
            );
            return Some(reply(req, 405, &e.body(), &[header("Allow", &allow)]));
        }
        let w = &self.worker;
        Some(match route {
            Route::Jobs if *method == Method::Get => {
                let list: Vec<Value> = w
                    .list()
                    .iter()
                    .map(|r| serde_json::to_value(r).expect("a record serializes"))
                    .collect();
                reply(req, 200, &Value::Array(list), &[])
            }
            Route::Jobs => match self.submit(&mut req) {
                Ok(rec) => {
                    let loc = format!("/jobs/{}", rec["id"].as_str().unwrap_or(""));
                    reply(req, 201, &rec, &[header("Location", &loc)])
                }
                Err(e) => fail(req, &e),
            },
            Route::Job(id) => match w.get(id) {
                Some(r) => reply(
                    req,
                    200,
                    &serde_json::to_value(r).expect("a record serializes"),
                    &[],
                ),
                None => fail(req, &not_found(id)),
            },
            Route::Usage(id) => match (w.get(id), w.usage(id)) {
                (Some(r), Ok(u)) => {
                    let body = json!({"id": r.id, "state": r.state.name(), "usage": u});
                    reply(req, 200, &body, &[])
                }
                _ => fail(req, &not_found(id)),
            },
            Route::Stop(id) => match w.stop(id) {
                Ok(()) => {
                    log(Level::Info, "job stop requested", &[("id", &id)]);
                    let rec = w
                        .get(id)
                        .map(|r| serde_json::to_value(r).expect("a record serializes"));
                    reply(req, 200, &rec.unwrap_or(Value::Null), &[])
                }
                Err(Error::NoSuchJob { .. }) => fail(req, &not_found(id)),
                Err(e @ Error::AlreadyFinished { .. }) => {
                    fail(req, &ApiError::new(409, e.to_string()))
                }
                Err(e) => fail(req, &ApiError::new(500, e.to_string())),
            },
            Route::Stream(id) => match w.logs(id) {
                Ok(reader) => {
                    let id = id.to_string();
                    let spawned = std::thread::Builder::new()
                        .name("stream".into())
                        .spawn(move || stream(req, reader, &id));
                    if let Err(e) = spawned {
                        log(
                            Level::Error,
                            "cannot start a stream thread",
                            &[("error", &e)],
                        );
                    }
                    return None;
                }
                Err(_) => fail(req, &not_found(id)),
            },
        })
    }

    fn submit(&self, req: &mut Request) -> Result<Value, ApiError> {
        let mut body = Vec::new();
        req.as_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| ApiError::new(400, format!("reading the body: {e}")))?;
        if body.len() as u64 > MAX_BODY {
            return Err(ApiError::new(
                413,
                format!("the body is larger than {MAX_BODY} bytes"),
            ));
        }
        let job = parse_job(&body, &self.config.defaults)?;
        let mut sandbox = Sandbox::untrusted();
        sandbox.limits(job.limits.clone());
        let mut command = Command::new(&job.command);
        command.args(&job.args);
        let handle = self
            .worker
            .submit(&sandbox, &command)
            .map_err(|e| submit_error(&e))?;
        let rec = self
            .worker
            .get(handle.id())
            .ok_or_else(|| ApiError::new(500, "the job vanished"))?;
        log(
            Level::Info,
            "job submitted",
            &[
                ("id", handle.id()),
                ("command", &job.command),
                ("args", &job.args.join(" ")),
            ],
        );
        Ok(serde_json::to_value(rec).expect("a record serializes"))
    }
}

/// Sends a job's output from the first byte, as it comes, until the job
/// ends: one thread and one reader per client, so a slow client only
/// slows itself.
fn stream(req: Request, reader: jobcell::LogReader, id: &str) {
    let chunked = *req.http_version() >= tiny_http::HTTPVersion(1, 1);
    let mut w = req.into_writer();
    let head = if chunked {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\r\n"
    } else {
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    };
    log(Level::Debug, "stream opened", &[("id", &id)]);
    let mut sent: u64 = 0;
    let result = (|| -> std::io::Result<()> {
        w.write_all(head.as_bytes())?;
        w.flush()?;
        for chunk in reader {
            if chunk.data.is_empty() {
                continue;
            }
            if chunked {
                write!(w, "{:x}\r\n", chunk.data.len())?;
                w.write_all(&chunk.data)?;
                w.write_all(b"\r\n")?;
            } else {
                w.write_all(&chunk.data)?;
            }
            w.flush()?;
            sent += chunk.data.len() as u64;
        }
        if chunked {
            w.write_all(b"0\r\n\r\n")?;
        }
        w.flush()
    })();
    match result {
        Ok(()) => log(
            Level::Debug,
            "stream ended",
            &[("id", &id), ("bytes", &sent)],
        ),
        Err(e) => log(
            Level::Debug,
            "stream client went away",
            &[("id", &id), ("bytes", &sent), ("error", &e)],
        ),
    }
}

// ---------------------------------------------------------------------------
// Signals: SIGINT and SIGTERM are blocked in every thread and taken by one.

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts from
/// now on. Their dispositions are reset to the default first: a shell script
/// starts background jobs with SIGINT ignored, and an ignored signal is
/// discarded instead of waiting for `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset; the calls
    // only read and write it. SIG_DFL cannot run code: both are blocked
    // before anything could deliver them (no thread exists yet).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        set
    }
}

/// Waits for one of the blocked signals.
fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: set is a valid sigset, sig a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "?",
    }
}

// ---------------------------------------------------------------------------

const HANDLER_THREADS: usize = 8;
const STOP_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    // Before any thread exists, so that all of them inherit the mask.
    let signals = block_signals();
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    LOG_LEVEL.store(config.level as u8, Ordering::Relaxed);
    let addr = match config.listen_addr() {
        Ok(a) => a,
        Err(e) => {
            log(Level::Error, "bad address", &[("error", &e)]);
            return ExitCode::from(2);
        }
    };
    let worker = match Worker::new(WorkerConfig {
        max_concurrent: Some(config.max_jobs),
        state_dir: Some(config.state_dir.clone()),
        stop_grace: STOP_GRACE,
        ..Default::default()
    }) {
        Ok(w) => w,
        Err(e) => {
            log(Level::Error, "cannot start the worker", &[("error", &e)]);
            return ExitCode::from(1);
        }
    };
    for issue in worker.recovery_issues() {
        log(Level::Warn, "skipped a damaged record", &[("issue", issue)]);
    }
    let server = match Server::http(addr) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log(
                Level::Error,
                "cannot listen",
                &[("addr", &addr), ("error", &e)],
            );
            return ExitCode::from(1);
        }
    };
    let bound = server
        .server_addr()
        .to_ip()
        .map_or_else(|| addr.to_string(), |a| a.to_string());
    let events = worker.subscribe();
    let event_log = std::thread::spawn(move || {
        for e in events {
            let reason = match &e.state {
                jobcell::JobState::Failed { reason } => reason.clone(),
                _ => String::new(),
            };
            let level = if reason.is_empty() {
                Level::Info
            } else {
                Level::Warn
            };
            let state = e.state.name();
            let mut fields: Vec<(&str, &dyn Display)> = vec![("id", &e.id), ("state", &state)];
            if !reason.is_empty() {
                fields.push(("reason", &reason));
            }
            log(level, "job state", &fields);
        }
    });
    let service = Arc::new(Service { worker, config });
    log(
        Level::Info,
        "listening",
        &[
            ("addr", &bound),
            ("state_dir", &service.config.state_dir.display()),
            ("max_jobs", &service.config.max_jobs),
            (
                "auth",
                &if service.config.token.is_some() {
                    "bearer"
                } else {
                    "none"
                },
            ),
            ("jobs_restored", &service.worker.list().len()),
        ],
    );

    let stopping = Arc::new(AtomicBool::new(false));
    let handlers: Vec<_> = (0..HANDLER_THREADS)
        .map(|_| {
            let (server, service, stopping) = (server.clone(), service.clone(), stopping.clone());
            std::thread::spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(200)) {
                        Ok(Some(req)) => service.handle(req),
                        Ok(None) => {}
                        Err(e) => log(Level::Warn, "accepting a request failed", &[("error", &e)]),
                    }
                }
            })
        })
        .collect();

    let sig = wait_signal(&signals);
    log(
        Level::Info,
        "shutting down: no new requests; stopping running jobs",
        &[
            ("signal", &signal_name(sig)),
            ("running", &service.worker.running()),
        ],
    );
    // A second signal ends the process at once (its cells die with it).
    std::thread::spawn(move || {
        let sig = wait_signal(&signals);
        log(
            Level::Warn,
            "second signal: exiting now",
            &[("signal", &signal_name(sig))],
        );
        std::process::exit(130);
    });
    stopping.store(true, Ordering::SeqCst);
    for h in handlers {
        let _ = h.join();
    }
    drop(server); // the last reference: closes the listening socket
    service.worker.shutdown(STOP_GRACE);
    let errors = service.worker.store_errors();
    for e in &errors {
        log(
            Level::Error,
            "a record could not be written",
            &[("error", e)],
        );
    }
    let jobs = service.worker.list();
    // Dropping the worker ends the event stream: its last lines come first.
    if let Ok(service) = Arc::try_unwrap(service) {
        drop(service);
        let _ = event_log.join();
    }
    let states: BTreeSet<&str> = jobs.iter().map(|r| r.state.name()).collect();
    log(
        Level::Info,
        "stopped",
        &[
            ("jobs", &jobs.len()),
            ("states", &states.into_iter().collect::<Vec<_>>().join(",")),
        ],
    );
    ExitCode::from(u8::from(!errors.is_empty()))
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_defaults_and_units() {
        let c = Config::from_env(env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/jobcell"));
        assert_eq!(c.max_jobs, DEFAULT_MAX_JOBS);
        assert_eq!(c.defaults, Defaults::default());
        assert_eq!(c.level, Level::Info);
        let c = Config::from_env(env(&[
            ("XDG_STATE_HOME", "/s"),
            ("HOME", "/home/u"),
            ("MAX_JOBS", "3"),
            ("DEFAULT_CPU_LIMIT", "50"),
            ("DEFAULT_MEMORY_LIMIT", "512M"),
            ("DEFAULT_IO_LIMIT", "10M"),
            ("WORKER_LOG_LEVEL", "DEBUG"),
        ]))
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/s/jobcell"));
        assert_eq!(c.max_jobs, 3);
        assert_eq!(
            c.defaults,
            Defaults {
                cpu_percent: Some(50),
                memory: Some(512 << 20),
                io_bps: Some(10 << 20)
            }
        );
        assert_eq!(c.level, Level::Debug);
        for (k, v) in [
            ("MAX_JOBS", "0"),
            ("MAX_JOBS", "-1"),
            ("DEFAULT_CPU_LIMIT", "half"),
            ("DEFAULT_MEMORY_LIMIT", "12 parsecs"),
            ("WORKER_LOG_LEVEL", "loud"),
        ] {
            let e = Config::from_env(env(&[("HOME", "/h"), (k, v)])).unwrap_err();
            assert!(e.contains(k), "{e}");
        }
        assert!(
            Config::from_env(env(&[])).is_err(),
            "no HOME and no WORKER_STATE_DIR"
        );
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let mut c =
            Config::from_env(env(&[("HOME", "/h"), ("WORKER_ADDR", "0.0.0.0:8080")])).unwrap();
        assert!(c.listen_addr().unwrap_err().contains("WORKER_TOKEN"));
        c.token = Some("t".into());
        assert!(c.listen_addr().is_ok());
        c.addr = "localhost:0".into();
        c.token = None;
        assert!(c.listen_addr().unwrap().ip().is_loopback());
    }

    fn bad(body: &str) -> ApiError {
        parse_job(body.as_bytes(), &Defaults::default()).unwrap_err()
    }

    #[test]
    fn job_requests() {
        let j = parse_job(
            br#"{"command":"echo","args":["Hello, isolated world!"],"limits":{"maxCPU":50,"maxMemory":128,"maxIOBPS":1048576}}"#,
            &Defaults::default(),
        )
        .unwrap();
        assert_eq!(j.command, "echo");
        assert_eq!(j.limits.cpu_percent, Some(50));
        assert_eq!(j.limits.memory, Some(128 << 20));
        assert_eq!(j.limits.io_read_bps, Some(1_048_576));
        assert_eq!(j.limits.io_write_bps, Some(1_048_576));
        let d = Defaults {
            cpu_percent: Some(20),
            memory: Some(1 << 30),
            io_bps: Some(5),
        };
        let j = parse_job(br#"{"command":"x","limits":{"maxCPU":0}}"#, &d).unwrap();
        assert_eq!(
            j.limits.cpu_percent, None,
            "0 is unlimited, even with a default"
        );
        assert_eq!(j.limits.memory, Some(1 << 30), "absent takes the default");
        assert_eq!(j.limits.io_read_bps, Some(5));
        let j = parse_job(br#"{"command":"x"}"#, &Defaults::default()).unwrap();
        assert_eq!(
            j.limits,
            Limits::conservative(),
            "no default: the untrusted one"
        );

        assert_eq!(bad("{").field.as_deref(), Some("body"));
        assert!(bad("{").message.contains("invalid JSON"));
        assert_eq!(bad("[]").field.as_deref(), Some("body"));
        assert_eq!(bad("{}").field.as_deref(), Some("command"));
        assert_eq!(bad(r#"{"command":""}"#).field.as_deref(), Some("command"));
        assert_eq!(
            bad(r#"{"command":"x","env":{}}"#).field.as_deref(),
            Some("env")
        );
        assert_eq!(
            bad(r#"{"command":"x","args":"a b"}"#).field.as_deref(),
            Some("args")
        );
        assert_eq!(
            bad(r#"{"command":"x","args":["a",1]}"#).field.as_deref(),
            Some("args[1]")
        );
        assert_eq!(
            bad(r#"{"command":"x","limits":{"maxDisk":1}}"#)
                .field
                .as_deref(),
            Some("limits.maxDisk")
        );
        let neg = bad(r#"{"command":"x","limits":{"maxCPU":-5}}"#);
        assert_eq!(neg.field.as_deref(), Some("limits.maxCPU"));
        assert!(neg.message.contains("negative"));
        let absurd = bad(r#"{"command":"x","limits":{"maxMemory":1e30}}"#);
        assert_eq!(absurd.field.as_deref(), Some("limits.maxMemory"));
        let absurd = bad(r#"{"command":"x","limits":{"maxCPU":1000000}}"#);
        assert!(absurd.message.contains("absurd"), "{absurd:?}");
        assert!(bad(r#"{"command":"x","limits":{"maxIOBPS":1.5}}"#)
            .message
            .contains("whole number"));
        assert!(bad(r#"{"command":"x","limits":{"maxIOBPS":"1M"}}"#)
            .message
            .contains("number"));
        assert_eq!(
            bad(r#"{"command":"x","limits":[]}"#).field.as_deref(),
            Some("limits")
        );
    }

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/jobs"), Some(Route::Jobs));
        assert_eq!(Route::parse("/jobs/"), Some(Route::Jobs));
        assert_eq!(Route::parse("/jobs?x=1"), Some(Route::Jobs));
        assert_eq!(Route::parse("/jobs/abc"), Some(Route::Job("abc")));
        assert_eq!(Route::parse("/jobs/abc/stream"), Some(Route::Stream("abc")));
        assert_eq!(Route::parse("/jobs/abc/stop"), Some(Route::Stop("abc")));
        assert_eq!(Route::parse("/jobs/abc/usage/"), Some(Route::Usage("abc")));
        for bad in [
            "/",
            "/jobsx",
            "/jobs/a/b",
            "/jobs/a/stream/x",
            "/jobs//stream",
            "/other",
        ] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn log_lines() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(utc(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let line = log_line(
            t,
            Level::Warn,
            "job state",
            &[("id", &"abc"), ("reason", &"exit code 3")],
        );
        assert_eq!(
            line,
            r#"ts=2023-11-14T22:13:20.123Z level=warn msg="job state" id=abc reason="exit code 3""#
        );
        assert_eq!(quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(quote(""), r#""""#);
        assert_eq!(quote("k=v"), r#""k=v""#);
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
    }

    proptest! {
        #[test]
        fn civil_dates_roundtrip(days in 0i64..200_000) {
            // Every day maps to a distinct, well-formed date in order.
            let a = utc(SystemTime::UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400));
            let b = utc(SystemTime::UNIX_EPOCH + Duration::from_secs((days as u64 + 1) * 86_400));
            prop_assert!(a < b, "{a} {b}");
            prop_assert_eq!(a.len(), 24);
        }

        #[test]
        fn parse_job_never_panics(s in "\\PC{0,200}") {
            let _ = parse_job(s.as_bytes(), &Defaults::default());
        }

        #[test]
        fn limits_within_bounds_are_taken(cpu in 1u32..=MAX_CPU, mib in 1u64..=MAX_MEMORY_MIB, io in 1u64..=MAX_IO_BPS) {
            let body = format!(r#"{{"command":"x","limits":{{"maxCPU":{cpu},"maxMemory":{mib},"maxIOBPS":{io}}}}}"#);
            let j = parse_job(body.as_bytes(), &Defaults::default()).unwrap();
            prop_assert_eq!(j.limits.cpu_percent, Some(cpu));
            prop_assert_eq!(j.limits.memory, Some(mib << 20));
            prop_assert_eq!(j.limits.io_write_bps, Some(io));
        }
    }
}
