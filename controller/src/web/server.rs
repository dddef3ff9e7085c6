//! The mixer's HTTP server: hyper's HTTP/1 connection loop with deadlines,
//! where `axum::serve` has none (it is "intentionally simple and doesn't
//! support any configuration"). Without them a client that connects and
//! never sends its headers, or sends half a body, holds a connection and a
//! task for ever; a few hundred such clients from the network exhaust the
//! controller's file descriptors.
//!
//! - [`HEADER_READ_TIMEOUT`]: the whole request head must arrive within
//!   it, or hyper closes the connection. Hyper starts that timer again
//!   whenever it waits for the next request on a kept-alive connection, so
//!   it is also the idle timeout: a connection with no request in flight
//!   is closed after it.
//! - [`REQUEST_TIMEOUT`]: reading the body and answering must be done
//!   within it, or the answer is 408 and the connection closes.
//!
//! A WebSocket leaves HTTP when it is upgraded; neither deadline applies
//! to it afterwards (its session ends when the page goes, or the mixer).
//!
//! Invariant: every accepted connection is served by one task that ends
//! when the connection does; on shutdown, connections are asked to finish
//! their request and close, and are waited for at most [`SHUTDOWN_GRACE`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;
use tracing::debug;

/// Time a client has to send a request's head (and, between requests, to
/// start the next one). A browser or script sends it in one packet; five
/// seconds leaves room for a phone on poor Wi-Fi.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time to read a request's body and answer it. The slowest legitimate
/// answer is an action waiting for its turn to be cast (a few rounds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long shutdown waits for open connections to finish.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The router with [`REQUEST_TIMEOUT`] applied to every request.
pub(super) fn with_request_timeout(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
                Ok(response) => response,
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    [(axum::http::header::CONNECTION, "close")],
                    "the request took too long",
                )
                    .into_response(),
            }
        },
    ))
}

/// Serves `router` on `listener` until `shutdown` resolves. Each request
/// carries `ConnectInfo<SocketAddr>`, the client's address, and the
/// extension `per_connection` made for its connection when it was
/// accepted (dropped when the connection closes).
///
/// # Errors
/// Never for a failed connection (that one is dropped); only if the
/// listener itself fails in a way a retry cannot fix.
pub(super) async fn serve<E: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    router: Router,
    per_connection: impl Fn(SocketAddr) -> E,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connection tasks as we go: the set stays as large
        // as the number of open connections.
        while connections.try_join_next().is_some() {}
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, a connection reset before
                // accept: the next accept may work; do not spin on it.
                Err(e) if is_transient(&e) => {
                    debug!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let _ = stream.set_nodelay(true);
        let extension = per_connection(remote);
        connections.spawn(connection(
            stream,
            remote,
            router.clone(),
            extension,
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        debug!(
            open = connections.len(),
            "connections still open at shutdown: dropped"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Serves one connection until it closes, times out or shutdown asks it
/// to finish.
async fn connection<E: Clone + Send + Sync + 'static>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    extension: E,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut().insert(extension.clone());
        let router = router.clone();
        async move {
            let response: Response = router.oneshot(req.map(axum::body::Body::new)).await?;
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%remote, "connection closed: {e}");
                }
                return;
            }
            changed = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                if changed.is_err() {
                    // The server is gone; finish this connection anyway.
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE, ENFILE
}
