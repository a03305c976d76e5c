//! Accepting connections: hyper's HTTP/1 with a header-read timeout, a
//! bound on open connections, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::app::App;

/// Serves `router` on `listener` until `stop` turns true; then stops
/// accepting, asks every connection to finish its request in flight and
/// close, and returns the handle that waits for them.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(app.config.max_connections));
    let service = TowerToHyperService::new(router);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // Covers an idle keep-alive connection too: the timer runs while
        // hyper waits for the next request's head.
        .header_read_timeout(app.config.header_timeout)
        .max_buf_size(64 << 10);
    loop {
        // At the bound, stop accepting: new connections wait in the backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: an error for this accept, not a
                    // state to spin in.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn);
        let app = app.clone();
        app.metrics.connections_open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended");
            }
            app.metrics.connections_open.dec();
            drop(permit);
        });
    }
    drop(listener);
    graceful
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
