//! `GET /jobs/{id}/stream`: a job's output as it comes, raw (chunked) or as
//! Server-Sent Events. Each stream is a task polling a `LogReader`: a
//! thousand streams are a thousand wakers, not a thousand threads.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use jobcell::{Chunk, JobId, JobRecord, LogReader, Stream};

use crate::api::job_id;
use crate::app::App;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start at this byte of the combined output.
    offset: Option<u64>,
    /// `false`: what there is now, then the end (a snapshot).
    follow: Option<bool>,
}

pub async fn stream(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let (jid, rec) = job_id(&app, &id)?;
    let sse = wants_sse(&headers);
    let resume = resume_offset(&headers)?;
    let mut reader = app
        .worker
        .logs(&jid)
        .map_err(|_| ApiError::not_found(&id))?;
    if let Some(offset) = resume.or(q.offset) {
        reader = reader.offset(offset);
    }
    if q.follow == Some(false) {
        reader = reader.snapshot();
    }
    tracing::debug!(id = %jid, sse, "stream opened");
    let open = Open::new(app.clone());
    if sse {
        let start = resume.or(q.offset).unwrap_or(0);
        // A finished job's record as it is now: the `end` event still has it
        // if the job is deleted while the stream is sent.
        let ended = rec.state.is_final().then_some(rec);
        Ok(sse_stream(app, jid, ended, reader, start, open).into_response())
    } else {
        Ok(raw_stream(app, reader, open))
    }
}

/// Counts a stream as open for as long as it lives.
struct Open(Arc<App>);

impl Open {
    fn new(app: Arc<App>) -> Open {
        app.metrics.streams_open.inc();
        Open(app)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics.streams_open.dec();
    }
}

fn raw_stream(app: Arc<App>, mut reader: LogReader, open: Open) -> Response {
    let bytes = app
        .metrics
        .stream_bytes
        .get_or_create(&vec![("format", "raw".to_string())])
        .clone();
    let body = futures_util::stream::poll_fn(move |cx| {
        let _open = &open;
        reader.poll_chunk(cx).map(|c| {
            c.map(|c| {
                bytes.inc_by(c.data.len() as u64);
                Ok::<_, Infallible>(Bytes::from_owner(c.data))
            })
        })
    });
    let mut r = Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

fn sse_stream(
    app: Arc<App>,
    id: JobId,
    ended: Option<JobRecord>,
    mut reader: LogReader,
    start: u64,
    open: Open,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let bytes = app
        .metrics
        .stream_bytes
        .get_or_create(&vec![("format", "sse".to_string())])
        .clone();
    let mut end: u64 = start;
    let mut done = false;
    let events = futures_util::stream::poll_fn(move |cx| {
        let _open = &open;
        if done {
            return Poll::Ready(None);
        }
        match reader.poll_chunk(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(c)) => {
                bytes.inc_by(c.data.len() as u64);
                end = c.offset + c.data.len() as u64;
                Poll::Ready(Some(Ok(chunk_event(&c))))
            }
            Poll::Ready(None) => {
                done = true;
                // The log ends with the job: its record is final by now. A
                // snapshot of a running job just stops.
                let rec = app.worker.get(&id).or_else(|| ended.clone());
                match rec.filter(|r| r.state.is_final()) {
                    Some(rec) => {
                        let ev = Event::default()
                            .event("end")
                            .id(end.to_string())
                            .data(app.present(&rec).to_string());
                        Poll::Ready(Some(Ok(ev)))
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Whether the client asked for Server-Sent Events (`Accept: text/event-stream`).
pub fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Where an SSE client resumes: its `Last-Event-ID`, the byte offset after
/// the last event it got.
pub fn resume_offset(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad("Last-Event-ID", "expected a byte offset"))
        })
        .transpose()
}

/// One chunk as one event named after its stream; its id is the byte offset
/// after it. Text that SSE cannot carry exactly (not UTF-8 on its own, or a
/// carriage return, which SSE reads as a line end) goes as base64, in an
/// event named `stdout.base64` or `stderr.base64`.
pub fn chunk_event(c: &Chunk) -> Event {
    let name = match c.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let id = (c.offset + c.data.len() as u64).to_string();
    match std::str::from_utf8(&c.data) {
        Ok(text) if !text.contains('\r') => Event::default().event(name).id(id).data(text),
        _ => Event::default()
            .event(format!("{name}.base64"))
            .id(id)
            .data(base64::engine::general_purpose::STANDARD.encode(&c.data)),
    }
}
