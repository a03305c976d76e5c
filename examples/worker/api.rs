//! The routes (listed in `docs/service.md`) and the layers around them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use jobcell::{Error, JobId, JobRecord, JobState};

use crate::app::App;
use crate::error::{submit_error, ApiError};
use crate::request;
use crate::stream;

pub fn router(app: Arc<App>) -> Router {
    let c = &app.config;
    let routes = Router::new()
        .route(
            "/jobs",
            get(list).post(submit).layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                c.body_timeout,
            )),
        )
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/stream", get(stream::stream))
        .route("/jobs/{id}/stop", post(stop))
        .route("/jobs/{id}/usage", get(usage))
        .route("/jobs/{id}/files", get(files))
        .route("/jobs/{id}/files/{*path}", get(file))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    // Cluster mode: the job routes answer from Redis.
    #[cfg(feature = "cluster")]
    let routes = match app.cluster.get() {
        Some(cl) => crate::cluster::routes(cl.clone()).route("/healthz", get(healthz)),
        None => routes,
    };
    routes
        .fallback(|| async { ApiError::new(404, "no such route") })
        .layer(ConcurrencyLimitLayer::new(c.max_requests))
        .layer(RequestBodyTimeoutLayer::new(c.body_timeout))
        .layer(RequestBodyLimitLayer::new(c.max_body as usize))
        .layer(middleware::from_fn_with_state(app.clone(), authorize))
        .layer(middleware::from_fn_with_state(app.clone(), json_errors))
        .layer(
            TraceLayer::new_for_http()
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .with_state(app)
}

/// Every route but the probes needs the bearer token when one is set. It is
/// checked before anything reads the body, and compared in constant time.
async fn authorize(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(token) = &app.config.token else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| bool::from(t.trim().as_bytes().ct_eq(token.as_bytes())));
    if !given {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), "unauthorized request");
        return ApiError::new(401, "missing or wrong bearer token").into_response();
    }
    next.run(req).await
}

/// Answers from the layers (413, 408, 405, 503) get the JSON error body every
/// other error has; every answer is counted by status.
async fn json_errors(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let r = next.run(req).await;
    let status = r.status();
    app.metrics
        .requests
        .get_or_create(&vec![("status", status.as_u16().to_string())])
        .inc();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return r;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the body is larger than {} bytes (WORKER_MAX_BODY)",
            app.config.max_body
        ),
        StatusCode::REQUEST_TIMEOUT => "the request took too long to arrive".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed here (the Allow header lists what is)")
        }
        s => s.canonical_reason().unwrap_or("error").to_string(),
    };
    let (mut parts, _) = r.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = format!("{}\n", json!({ "error": message }));
    Response::from_parts(parts, Body::from(body))
}

/// Parses an id from a path; an id that cannot exist is simply not found.
pub fn job_id(app: &App, id: &str) -> Result<(JobId, JobRecord), ApiError> {
    let parsed: JobId = id.parse().map_err(|_| ApiError::not_found(id))?;
    let rec = app
        .worker
        .get(&parsed)
        .ok_or_else(|| ApiError::not_found(id))?;
    Ok((parsed, rec))
}

/// Runs blocking library work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task panicked")
}

async fn submit(State(app): State<Arc<App>>, body: Body) -> Result<Response, ApiError> {
    let limit = app.config.max_body as usize;
    let body = to_bytes(body, limit).await.map_err(|e| {
        if e.to_string().contains("length limit exceeded") {
            ApiError::new(
                413,
                format!("the body is larger than {limit} bytes (WORKER_MAX_BODY)"),
            )
        } else {
            ApiError::new(400, format!("reading the body: {e}"))
        }
    })?;
    if app.is_stopping() {
        return Err(ApiError::new(503, "the service is shutting down"));
    }
    let req = request::parse(&body, &app.config.defaults)?;
    let a = app.clone();
    let (id, command) = blocking(move || -> Result<(JobId, String), ApiError> {
        let request::JobRequest { spec, legacy } = req;
        let workdir = if spec.needs_workdir() {
            let dir = a
                .new_workdir()
                .map_err(|e| ApiError::new(500, format!("cannot make a work directory: {e}")))?;
            if let Err(e) = spec.write_files(&dir) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(submit_error(&e, &legacy));
            }
            Some(dir)
        } else {
            None
        };
        let submitted = spec
            .build(&a.base, workdir.as_deref())
            .and_then(|(sandbox, command)| a.worker.submit(&a.for_submit(sandbox), &command));
        match submitted {
            Ok(handle) => {
                let id = handle.id().clone();
                a.register(&id, &spec, legacy, workdir);
                Ok((id, spec.command.clone()))
            }
            Err(e) => {
                if let Some(d) = workdir {
                    let _ = std::fs::remove_dir_all(d);
                }
                Err(submit_error(&e, &legacy))
            }
        }
    })
    .await?;
    app.metrics.submitted.inc();
    tracing::info!(id = %id, command = %command, "job submitted");
    let rec = app
        .worker
        .get(&id)
        .ok_or_else(|| ApiError::new(500, "the job vanished"))?;
    let mut r = (StatusCode::CREATED, Json(app.present(&rec))).into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/jobs/{id}")).expect("an id is a valid header"),
    );
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated state names.
    state: Option<String>,
    limit: Option<usize>,
    /// The last id of the previous page.
    after: Option<String>,
}

const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad("limit", format!("must be 1 to {MAX_PAGE}")));
    }
    let states: Option<Vec<String>> = q
        .state
        .as_ref()
        .map(|s| s.split(',').map(|s| s.trim().to_string()).collect());
    if let Some(states) = &states {
        if let Some(bad) = states.iter().find(|s| !STATES.contains(&s.as_str())) {
            return Err(ApiError::bad(
                "state",
                format!("unknown state {bad:?} (one of {})", STATES.join(", ")),
            ));
        }
    }
    let all = blocking({
        let app = app.clone();
        move || app.worker.list()
    })
    .await;
    let start = match &q.after {
        None => 0,
        Some(after) => {
            all.iter()
                .position(|r| r.id.as_str() == after)
                .ok_or_else(|| ApiError::bad("after", format!("no job with id {after:?}")))?
                + 1
        }
    };
    let mut page = Vec::new();
    let mut more = false;
    for r in &all[start..] {
        if states
            .as_ref()
            .is_some_and(|s| !s.iter().any(|s| s == r.state.name()))
        {
            continue;
        }
        if page.len() == limit {
            more = true;
            break;
        }
        page.push(r);
    }
    let next = more
        .then(|| page.last().map(|r| r.id.to_string()))
        .flatten();
    let body: Vec<Value> = page.iter().map(|r| app.present(r)).collect();
    let mut resp = Json(body).into_response();
    if let Some(last) = next {
        let mut link = format!("</jobs?after={last}&limit={limit}");
        if let Some(s) = &q.state {
            link.push_str(&format!("&state={s}"));
        }
        link.push_str(">; rel=\"next\"");
        resp.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&link).expect("plain text"),
        );
    }
    Ok(resp)
}

/// Every state name a job can have.
pub const STATES: &[&str] = &[
    "queued",
    "initializing",
    "running",
    "completed",
    "failed",
    "stopped",
    "timed_out",
    "out_of_memory",
    "output_limit_exceeded",
    "bad_syscall",
];

async fn get_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, rec) = job_id(&app, &id)?;
    Ok(Json(app.present(&rec)).into_response())
}

async fn usage(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (jid, rec) = job_id(&app, &id)?;
    let a = app.clone();
    let u = blocking(move || a.worker.usage(&jid))
        .await
        .map_err(|_| ApiError::not_found(&id))?;
    Ok(Json(json!({"id": rec.id, "state": rec.state.name(), "usage": u})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopQuery {
    /// How long to wait for the job to end, as `5s` or `500ms` (at most 60 s).
    wait: Option<String>,
}

const MAX_WAIT: Duration = Duration::from_secs(60);

async fn stop(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<StopQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let wait = match &q.wait {
        None => None,
        Some(w) => match jobcell::units::parse_duration(w) {
            Ok(d) if d <= MAX_WAIT => Some(d),
            _ => {
                return Err(ApiError::bad(
                    "wait",
                    format!("{w:?}: expected a duration up to 60s, such as 5s"),
                ))
            }
        },
    };
    let (jid, _) = job_id(&app, &id)?;
    // Listen before stopping, so the end cannot slip by unseen.
    let mut ended = app.ended.subscribe();
    let a = app.clone();
    let j = jid.clone();
    match blocking(move || a.worker.stop(&j)).await {
        Ok(()) => {}
        Err(Error::NoSuchJob { .. }) => return Err(ApiError::not_found(&id)),
        Err(e @ Error::AlreadyFinished { .. }) => return Err(ApiError::new(409, e.to_string())),
        Err(e) => return Err(ApiError::new(500, e.to_string())),
    }
    tracing::info!(id = %jid, "job stop requested");
    if let Some(wait) = wait {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if app.worker.get(&jid).is_some_and(|r| r.state.is_final()) {
                break;
            }
            match tokio::time::timeout_at(deadline, ended.recv()).await {
                Err(_) => break,
                Ok(Ok(done)) if done == jid => {
                    // Its end is published a moment before its record says
                    // so: wait for that moment, not for another event.
                    if let Some(h) = app.worker.handle(&jid) {
                        let _ = blocking(move || h.wait_timeout(Duration::from_secs(5))).await;
                    }
                    break;
                }
                Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => break,
            }
        }
    }
    let rec = app
        .worker
        .get(&jid)
        .ok_or_else(|| ApiError::not_found(&id))?;
    let mut body = app.present(&rec);
    if rec.state.is_final() {
        return Ok(Json(body).into_response());
    }
    // Not yet: say what it will be.
    body.as_object_mut()
        .expect("an object")
        .insert("will_be".into(), JobState::Stopped.name().into());
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn delete_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jid, rec) = job_id(&app, &id)?;
    let a = app.clone();
    let j = jid.clone();
    blocking(move || crate::retention::remove(&a, &j))
        .await
        .map_err(|e| match e {
            Error::NoSuchJob { .. } => ApiError::not_found(&id),
            Error::NotFinished { .. } => ApiError::new(
                409,
                format!("job {id} is {}: stop it first", rec.state.name()),
            ),
            e => ApiError::new(500, e.to_string()),
        })?;
    app.retention.forget(&jid);
    tracing::info!(id = %jid, "job deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn files(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (jid, _) = job_id(&app, &id)?;
    let a = app.clone();
    let files = blocking(move || a.collected_files(&jid)).await;
    Ok(Json(files).into_response())
}

async fn file(
    State(app): State<Arc<App>>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (jid, _) = job_id(&app, &id)?;
    let a = app.clone();
    let files = blocking(move || a.collected_files(&jid)).await;
    let content = files
        .get(&path)
        .ok_or_else(|| ApiError::new(404, format!("job {id} has no collected file {path:?}")))?;
    let mut r = Body::from(content.as_bytes().to_vec()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let a = app.clone();
    let all = blocking(move || a.worker.list()).await;
    let m = &app.metrics;
    for s in STATES {
        let n = all.iter().filter(|r| r.state.name() == *s).count();
        m.jobs
            .get_or_create(&vec![("state", s.to_string())])
            .set(n as i64);
    }
    m.queued
        .set(all.iter().filter(|r| r.state == JobState::Queued).count() as i64);
    m.running.set(app.worker.running() as i64);
    let mut r = m.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>, _h: HeaderMap) -> Response {
    if app.is_stopping() {
        return ApiError::new(503, "shutting down").into_response();
    }
    let (ready, problems) = app.ready.lock().clone();
    if ready {
        "ready\n".into_response()
    } else {
        ApiError::new(503, format!("this host cannot run cells: {problems}")).into_response()
    }
}
