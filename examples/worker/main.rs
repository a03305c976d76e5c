//! `worker`: the HTTP job service on [`jobcell::Worker`].
//!
//! ```text
//! cargo run --example worker          # listens on 127.0.0.1:8080
//! curl -X POST http://localhost:8080/jobs -H "Content-Type: application/json" \
//!   -d '{"command":"echo","args":["Hello, isolated world!"],"limits":{"maxCPU":50,"maxMemory":128,"maxIOBPS":1048576}}'
//! curl -N http://localhost:8080/jobs/{jobId}/stream
//! ```
//!
//! Every route, request, answer and setting is described in
//! `docs/service.md`. The service runs on axum/hyper/tokio; the library
//! underneath is synchronous, so blocking calls go through `spawn_blocking`,
//! and output streams poll `LogReader::poll_chunk` (no thread per stream).
//!
//! Module by concern: `config` (the environment), `request` (`POST /jobs`
//! bodies), `api` (routes and layers), `stream` (raw and SSE output),
//! `app` (state, events, work directories), `retention`, `metrics`,
//! `server` (connections and graceful shutdown).

mod api;
mod app;
#[cfg(feature = "cluster")]
mod cluster;
mod config;
mod error;
mod metrics;
mod request;
mod retention;
mod server;
mod stream;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use jobcell::host::{self, Status};
use jobcell::{Worker, WorkerConfig};

use app::App;
use config::Config;

/// The jobcell HTTP job service: runs commands in isolated, resource-limited
/// cells and streams their output. Configured by environment variables (see
/// docs/service.md): WORKER_ADDR, WORKER_TOKEN, WORKER_STATE_DIR, MAX_JOBS,
/// DEFAULT_*_LIMIT, ...
#[derive(Debug, Parser)]
#[command(name = "worker")]
struct Cli {
    /// Print the host report (what this machine lacks to run cells) and exit:
    /// 0 when it can run cells, 1 when it cannot.
    #[arg(long, alias = "validate")]
    check: bool,
}

/// How often the host check behind `/readyz` runs again.
const RECHECK: Duration = Duration::from_secs(60);
/// How often the retention policy runs.
const SWEEP: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logs(&config) {
        eprintln!("worker: WORKER_LOG_LEVEL={:?}: {e}", config.log_level);
        return ExitCode::from(2);
    }
    let report = host::check();
    if cli.check {
        print!("{report}");
        return ExitCode::from(u8::from(report.status() == Status::Problem));
    }
    if report.status() == Status::Problem {
        let problems = problems(&report);
        tracing::error!(problems = %problems, "this host cannot run cells (worker --check says why)");
        eprint!("{report}");
        return ExitCode::from(1);
    }
    let addr = match config.listen_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "bad address");
            return ExitCode::from(2);
        }
    };
    raise_nofile();
    let worker = match Worker::new(WorkerConfig {
        max_concurrent: Some(config.max_jobs),
        max_queued: Some(config.max_queued),
        state_dir: Some(config.state_dir.clone()),
        stop_grace: config.stop_grace,
        ..Default::default()
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the worker");
            return ExitCode::from(1);
        }
    };
    for issue in worker.recovery_issues() {
        tracing::warn!(issue = %issue, "skipped a damaged record");
    }
    let events = worker.subscribe();
    let app = match App::new(worker, config, (true, String::new())) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the service");
            return ExitCode::from(1);
        }
    };
    if app.config.redis_url.is_some() {
        #[cfg(feature = "cluster")]
        match cluster::Cluster::start(&app) {
            Ok(c) => {
                tracing::info!(
                    client = ?c.client,
                    node = %c.node.as_ref().map_or("none", |n| n.name()),
                    "cluster mode"
                );
                let _ = app.cluster.set(Arc::new(c));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot join the cluster");
                return ExitCode::from(1);
            }
        }
        #[cfg(not(feature = "cluster"))]
        {
            tracing::error!("WORKER_REDIS_URL is set, but this build has no cluster mode (build with --features cluster)");
            return ExitCode::from(2);
        }
    }
    let follower = {
        let app = Arc::downgrade(&app);
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || app::follow_events(app, events))
            .expect("cannot start the events thread")
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let code = runtime.block_on(run(app.clone(), addr));
    // A node finishes its jobs within the stop grace; the rest run elsewhere.
    #[cfg(feature = "cluster")]
    if let Some(node) = app.cluster.get().and_then(|c| c.node.as_ref()) {
        node.shutdown(app.config.stop_grace);
    }
    // Whatever clients still hold (a stalled stream) goes with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    let jobs = app.worker.list();
    let errors = app.worker.store_errors();
    for e in &errors {
        tracing::error!(error = %e, "a record could not be written");
    }
    // Dropping the worker ends the event stream: its last lines come first.
    if let Ok(app) = Arc::try_unwrap(app) {
        drop(app);
        let _ = follower.join();
    }
    let mut states: Vec<&str> = jobs.iter().map(|r| r.state.name()).collect();
    states.sort_unstable();
    states.dedup();
    tracing::info!(jobs = jobs.len(), states = %states.join(","), "stopped");
    match code {
        Some(c) => c,
        None => ExitCode::from(u8::from(!errors.is_empty())),
    }
}

/// Serves until SIGTERM or SIGINT, then shuts down within the stop grace
/// plus a little: returns an exit code when it could not start.
async fn run(app: Arc<App>, addr: std::net::SocketAddr) -> Option<ExitCode> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %addr, error = %e, "cannot listen");
            return Some(ExitCode::from(1));
        }
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot watch signals");
            return Some(ExitCode::from(1));
        }
    };
    let bound = listener.local_addr().map_or(addr, |a| a);
    let c = &app.config;
    tracing::info!(
        addr = %bound,
        state_dir = %c.state_dir.display(),
        max_jobs = c.max_jobs,
        auth = %if c.token.is_some() { "bearer" } else { "none" },
        jobs_restored = app.worker.list().len(),
        "listening"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::serve(
        app.clone(),
        listener,
        api::router(app.clone()),
        stop_rx,
    ));
    tokio::spawn(retention::run(app.clone(), SWEEP));
    tokio::spawn(recheck(app.clone()));

    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let grace = app.config.stop_grace;
    let deadline = tokio::time::Instant::now() + grace + Duration::from_millis(700);
    tracing::info!(
        signal = %sig,
        running = app.worker.running(),
        "shutting down: no new requests; stopping running jobs"
    );
    // A second signal ends the process at once (its cells die with it).
    tokio::spawn(async move {
        let sig = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = %sig, "second signal: exiting now");
        std::process::exit(130);
    });
    app.stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let connections = match server.await {
        Ok(graceful) => Some(tokio::spawn(graceful.shutdown())),
        Err(_) => None,
    };
    let a = app.clone();
    let jobs = tokio::task::spawn_blocking(move || a.worker.shutdown(grace));
    if tokio::time::timeout_at(deadline, jobs).await.is_err() {
        tracing::warn!("jobs still ending at the deadline");
    }
    // Streams end with their jobs; requests in flight get until the deadline.
    if let Some(c) = connections {
        if tokio::time::timeout_at(deadline, c).await.is_err() {
            tracing::info!("closing connections still open at the deadline");
        }
    }
    None
}

/// Runs the host check again now and then: `/readyz` follows the host.
async fn recheck(app: Arc<App>) {
    loop {
        tokio::time::sleep(RECHECK).await;
        let report = tokio::task::spawn_blocking(host::check).await;
        if let Ok(report) = report {
            let ok = report.status() != Status::Problem;
            let problems = problems(&report);
            let mut g = app.ready.lock();
            if g.0 != ok {
                tracing::warn!(ready = ok, problems = %problems, "host check changed");
            }
            *g = (ok, problems);
        }
    }
}

fn problems(report: &host::HostReport) -> String {
    report
        .problems()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

fn init_logs(config: &Config) -> Result<(), String> {
    let level = config.log_level.trim();
    let directive = if ["error", "warn", "info", "debug", "trace"].contains(&level) {
        format!("warn,worker={level},jobcell={level},tower_http={level}")
    } else {
        level.to_string()
    };
    let filter = EnvFilter::try_new(directive).map_err(|e| e.to_string())?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    Ok(())
}

/// Each connection and each stream's job take descriptors: use the hard
/// limit the host grants instead of the soft 1024.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
}
