//! Cluster mode (`WORKER_REDIS_URL`, feature `cluster`): the same routes,
//! answered from Redis for every job of the cluster, wherever it runs; this
//! instance is also a node unless `WORKER_CLUSTER_NODE=0`. It keeps no job
//! state of its own, so any instance answers for any job.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use jobcell::cluster::{Client, ClientConfig, ClusterJob, Node, NodeConfig, Retry};
use jobcell::{Chunk, Error, JobId};

use crate::app::App;
use crate::error::{submit_error, ApiError};
use crate::{request, stream};

/// The cluster as this instance sees it.
pub struct Cluster {
    pub client: Arc<Client>,
    /// For `/metrics` and `/readyz`: gives up after 2 s of outage, so a
    /// scrape or a probe never hangs on a Redis that is down.
    probe: Arc<Client>,
    pub node: Option<Node>,
    /// Redis settings for the followers each stream makes.
    config: ClientConfig,
}

impl Cluster {
    /// Connects (lazily) to the cluster and starts the node, if configured.
    pub fn start(app: &App) -> Result<Cluster, Error> {
        let c = &app.config;
        let url = c.redis_url.clone().unwrap_or_default();
        let mut config = ClientConfig::new(&url);
        config.prefix = c.redis_prefix.clone();
        let client = Arc::new(Client::with_config(config.clone())?);
        let mut quick = config.clone();
        quick.timeout = Duration::from_secs(2);
        let probe = Arc::new(Client::with_config(quick)?);
        let node = if c.cluster_node {
            let mut n = NodeConfig::new(&url);
            n.prefix = c.redis_prefix.clone();
            n.slots = c.max_jobs;
            n.lease = c.cluster_lease;
            n.sandbox = app.base.clone();
            n.collect_max_bytes = c.collect_max;
            n.worker.stop_grace = c.stop_grace;
            n.work_dir = Some(c.state_dir.join("work"));
            Some(Node::start(n)?)
        } else {
            None
        };
        Ok(Cluster {
            client,
            probe,
            node,
            config,
        })
    }
}

/// The job routes in cluster mode (`api::router` adds the probes and layers).
pub fn routes(cluster: Arc<Cluster>) -> Router<Arc<App>> {
    Router::new()
        .route("/jobs", get(list).post(submit))
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/stream", get(stream))
        .route("/jobs/{id}/stop", post(stop))
        .route("/jobs/{id}/files", get(files))
        .route("/jobs/{id}/files/{*path}", get(file))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .layer(Extension(cluster))
}

type Cl = Extension<Arc<Cluster>>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task panicked")
}

fn cluster_error(e: Error, id: &str) -> ApiError {
    match e {
        Error::NoSuchJob { .. } => ApiError::not_found(id),
        Error::AlreadyFinished { .. } => ApiError::new(409, e.to_string()),
        Error::NotFinished { .. } => ApiError::new(409, e.to_string()),
        Error::RedisUnavailable { .. } => ApiError::new(503, e.to_string()),
        e => ApiError::new(500, e.to_string()),
    }
}

fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(id))
}

/// A job as the API shows it: its record once it has one (else what the
/// cluster knows), with the attempt, the node and what was collected.
fn present(job: &ClusterJob) -> Value {
    let mut v = match &job.record {
        Some(r) => serde_json::to_value(r).expect("a record serializes"),
        None => {
            let mut v = json!({
                "id": job.id,
                "command": job.spec.command,
                "args": job.spec.args,
                "limits": job.spec.limits,
                "created_ms": job.created.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
            });
            let state = serde_json::to_value(&job.state).expect("a state serializes");
            if let (Some(o), Value::Object(s)) = (v.as_object_mut(), state) {
                o.extend(s);
            }
            v
        }
    };
    let o = v.as_object_mut().expect("an object");
    o.insert("attempt".into(), job.attempt.into());
    o.insert("max_attempts".into(), job.max_attempts.into());
    o.insert("node".into(), job.node.clone().into());
    if !job.files.is_empty() {
        let c: serde_json::Map<String, Value> = job
            .files
            .iter()
            .map(|(k, f)| {
                let v = match f {
                    Ok(c) => json!({"size": c.len()}),
                    Err(e) => json!({"error": e}),
                };
                (k.clone(), v)
            })
            .collect();
        o.insert("collected".into(), Value::Object(c));
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitQuery {
    /// Attempts in all when nodes running the job are lost.
    max_attempts: Option<u32>,
}

async fn submit(
    State(app): State<Arc<App>>,
    Extension(cl): Cl,
    query: Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let limit = app.config.max_body as usize;
    let body = to_bytes(body, limit)
        .await
        .map_err(|e| ApiError::new(413, format!("reading the body: {e}")))?;
    if app.is_stopping() {
        return Err(ApiError::new(503, "the service is shutting down"));
    }
    let req = request::parse(&body, &app.config.defaults)?;
    let retry = match q.max_attempts {
        Some(0) => return Err(ApiError::bad("max_attempts", "at least 1")),
        Some(n) => Retry { max_attempts: n },
        None => Retry::default(),
    };
    let client = cl.client.clone();
    let job = blocking(move || {
        let id = client
            .submit_with(&req.spec, retry)
            .map_err(|e| submit_error(&e, &req.legacy))?;
        client.get(&id).map_err(|e| cluster_error(e, id.as_str()))
    })
    .await?;
    app.metrics.submitted.inc();
    tracing::info!(id = %job.id, command = %job.spec.command, "job submitted to the cluster");
    let mut r = (StatusCode::CREATED, Json(present(&job))).into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/jobs/{}", job.id)).expect("an id is a valid header"),
    );
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    Extension(cl): Cl,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let client = cl.client.clone();
    let jobs = blocking(move || client.list(limit))
        .await
        .map_err(|e| cluster_error(e, ""))?;
    let jobs: Vec<Value> = jobs.iter().map(present).collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

async fn get_job(Extension(cl): Cl, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jid = parse_id(&id)?;
    let client = cl.client.clone();
    let job = blocking(move || client.get(&jid))
        .await
        .map_err(|e| cluster_error(e, &id))?;
    Ok(Json(present(&job)).into_response())
}

async fn stop(Extension(cl): Cl, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jid = parse_id(&id)?;
    let client = cl.client.clone();
    let job = blocking(move || {
        client.stop(&jid)?;
        client.get(&jid)
    })
    .await
    .map_err(|e| cluster_error(e, &id))?;
    Ok((StatusCode::ACCEPTED, Json(present(&job))).into_response())
}

async fn delete_job(Extension(cl): Cl, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jid = parse_id(&id)?;
    let client = cl.client.clone();
    blocking(move || client.remove(&jid))
        .await
        .map_err(|e| cluster_error(e, &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn files(Extension(cl): Cl, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jid = parse_id(&id)?;
    let client = cl.client.clone();
    let job = blocking(move || client.get(&jid))
        .await
        .map_err(|e| cluster_error(e, &id))?;
    let v = present(&job);
    Ok(Json(v.get("collected").cloned().unwrap_or(json!({}))).into_response())
}

async fn file(
    Extension(cl): Cl,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let jid = parse_id(&id)?;
    let client = cl.client.clone();
    let job = blocking(move || client.get(&jid))
        .await
        .map_err(|e| cluster_error(e, &id))?;
    match job.files.get(&path) {
        Some(Ok(c)) => {
            let mut r = Bytes::copy_from_slice(c.as_bytes()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(r)
        }
        Some(Err(e)) => Err(ApiError::new(404, format!("{path}: {e}"))),
        None => Err(ApiError::new(404, format!("{path} was not collected"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    offset: Option<u64>,
}

/// A job's output from Redis, raw or as SSE, from any instance. A thread
/// follows the log (blocking reads of at most 200 ms, so it notices a
/// client that left) and hands chunks to the response.
async fn stream(
    Extension(cl): Cl,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let jid = parse_id(&id)?;
    let sse = stream::wants_sse(&headers);
    let resume = stream::resume_offset(&headers)?;
    let start = resume.or(q.offset).unwrap_or(0);
    let client = Client::with_config(cl.config.clone()).map_err(|e| cluster_error(e, &id))?;
    let j = jid.clone();
    let follower = blocking(move || client.logs(&j).map(|f| (f.offset(start), client)))
        .await
        .map_err(|e| cluster_error(e, &id))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Chunk, Value>>(16);
    std::thread::Builder::new()
        .name("cluster-stream".into())
        .spawn(move || follow(follower, jid, tx))
        .map_err(|e| ApiError::new(503, format!("cannot follow the log: {e}")))?;
    if sse {
        let events = futures_util::stream::unfold(rx, |mut rx| async move {
            let ev = match rx.recv().await? {
                Ok(c) => crate::stream::chunk_event(&c),
                Err(end) => Event::default().event("end").data(end.to_string()),
            };
            Some((Ok::<_, Infallible>(ev), rx))
        });
        Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response())
    } else {
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await? {
                    Ok(c) => return Some((Ok::<_, Infallible>(Bytes::from_owner(c.data)), rx)),
                    Err(_) => continue,
                }
            }
        });
        let mut r = Body::from_stream(body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(r)
    }
}

/// The follower's thread: chunks, then the job as it ended (the `end` event).
fn follow(
    (mut log, client): (jobcell::cluster::LogFollower, Client),
    id: JobId,
    tx: tokio::sync::mpsc::Sender<Result<Chunk, Value>>,
) {
    while !log.is_done() && !tx.is_closed() {
        match log.next_timeout(Duration::from_millis(200)) {
            Ok(Some(e)) => {
                let chunk = Chunk {
                    stream: e.stream,
                    data: e.data.into(),
                    offset: e.offset,
                    time: std::time::SystemTime::now(),
                };
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "following a log from the cluster");
                if matches!(e, Error::NoSuchJob { .. }) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if let Ok(job) = client.get(&id) {
        let _ = tx.blocking_send(Err(present(&job)));
    }
}

async fn metrics(State(app): State<Arc<App>>, Extension(cl): Cl) -> Response {
    let client = cl.probe.clone();
    let stats = blocking(move || client.stats()).await;
    let mut text = app.metrics.render();
    // Appended before the OpenMetrics end mark.
    if let Some(stripped) = text.strip_suffix("# EOF\n") {
        text = stripped.to_string();
    }
    let mut add = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        let suffix = if kind == "counter" { "_total" } else { "" };
        for (labels, v) in samples {
            text.push_str(&format!("{name}{suffix}{labels} {v}\n"));
        }
    };
    match stats {
        Ok(s) => {
            add(
                "jobcell_cluster_queue_waiting",
                "gauge",
                "Jobs in the queue no node has taken.",
                vec![(String::new(), s.waiting)],
            );
            add(
                "jobcell_cluster_pending",
                "gauge",
                "Jobs taken and not finished, per node.",
                s.pending_by_node
                    .iter()
                    .map(|(n, v)| {
                        (
                            format!("{{node=\"{}\"}}", n.replace(['"', '\\', '\n'], "_")),
                            *v,
                        )
                    })
                    .collect(),
            );
            add(
                "jobcell_cluster_nodes",
                "gauge",
                "Nodes with a live heartbeat.",
                vec![(String::new(), s.nodes.len() as u64)],
            );
            add(
                "jobcell_cluster_submitted",
                "counter",
                "Jobs submitted to the cluster.",
                vec![(String::new(), s.submitted)],
            );
            add(
                "jobcell_cluster_finished",
                "counter",
                "Jobs of the cluster finished.",
                vec![(String::new(), s.finished)],
            );
            add(
                "jobcell_cluster_claims",
                "counter",
                "Queue entries taken over from lost nodes.",
                vec![(String::new(), s.claims)],
            );
            add(
                "jobcell_cluster_reruns",
                "counter",
                "Attempts after the first.",
                vec![(String::new(), s.reruns)],
            );
            add(
                "jobcell_cluster_lost",
                "counter",
                "Jobs failed as node lost.",
                vec![(String::new(), s.lost)],
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the cluster's figures"),
    }
    if let Some(node) = &cl.node {
        let n = node.stats();
        add(
            "jobcell_node_slots",
            "gauge",
            "This node's slots.",
            vec![(String::new(), n.slots as u64)],
        );
        add(
            "jobcell_node_running",
            "gauge",
            "Jobs this node runs now.",
            vec![(String::new(), n.running as u64)],
        );
        add(
            "jobcell_node_started",
            "counter",
            "Attempts this node started.",
            vec![(String::new(), n.started)],
        );
        add(
            "jobcell_node_fenced",
            "counter",
            "Attempts killed because another node took the job over.",
            vec![(String::new(), n.fenced)],
        );
        add(
            "jobcell_node_redis_reconnects",
            "counter",
            "Reconnections to Redis after a failure.",
            vec![(String::new(), n.reconnects)],
        );
    }
    text.push_str("# EOF\n");
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn readyz(State(app): State<Arc<App>>, Extension(cl): Cl) -> Response {
    if app.is_stopping() {
        return ApiError::new(503, "shutting down").into_response();
    }
    let client = cl.probe.clone();
    match blocking(move || client.redis_memory()).await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => ApiError::new(503, format!("the cluster's Redis: {e}")).into_response(),
    }
}
