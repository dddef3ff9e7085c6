//! The web mixer: one page (HTML, CSS and JS embedded in the binary), a
//! WebSocket that pushes the [`MixerState`] whenever it changes and takes
//! actions, and a small JSON API for scripts (`GET /api/state`,
//! `POST /api/act`). Every message is a serde type ([`Action`] in,
//! [`MixerState`] and the replies out): fields, never Rust debug text.
//!
//! Every route passes [`Access::allows`]; the WebSocket also checks its
//! `Origin`. Actions are checked ([`action::check`]) before a vote is cast,
//! so a bad input gets a message instead of a silently dropped vote.
//!
//! Invariant: the page shows only what the controller's member knows; a
//! control becomes pending when its vote is cast and stops being pending
//! when the decision is applied, never on a guess.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info};

use crate::access::Access;
use crate::action::{self, Action};
use crate::ballot::{Client, Ticket};
use crate::link::{Link, LinkError};
use crate::mixer::{self, MixerState};
use crate::pending::Pending;

mod server;

pub use server::{HEADER_READ_TIMEOUT, REQUEST_TIMEOUT};

const PAGE: &str = include_str!("web/index.html");
const STYLE: &str = include_str!("web/style.css");
const SCRIPT: &str = include_str!("web/app.js");

/// How often the state is recomputed even without news (positions move,
/// "last heard" ages, pending votes reach their instant).
const REFRESH: Duration = Duration::from_millis(100);

/// The page with its style and script inlined: one request loads it all.
#[must_use]
pub fn page() -> String {
    PAGE.replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT)
}

/// Shared by every connection.
struct Hub {
    link: Link,
    /// Where positions are held while no speaker answers.
    held: Mutex<mixer::Held>,
    state: watch::Sender<Arc<MixerState>>,
    poke: Notify,
    access: Access,
    page: String,
}

impl Hub {
    fn recompute(&self) {
        let st = self.link.status();
        let pending = self.link.pending();
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = mixer::state_held(
            &st,
            &pending,
            self.link.waited(),
            self.link.give_up(),
            &mut held,
        );
        drop(held);
        self.state.send_if_modified(|cur| {
            if **cur == next {
                false
            } else {
                *cur = Arc::new(next);
                true
            }
        });
    }

    /// Checks an action and queues its vote in `client`'s own queue; it
    /// shows as pending at once. Await the ticket for its sequence number.
    fn act(&self, client: &Client, req: &Action) -> Result<Ticket, String> {
        let st = self.link.status();
        let event = req.event(&st).map_err(|e| e.to_string())?;
        action::check(&event, st.channels.len(), mixer::loaded_length(&st))
            .map_err(|e| e.to_string())?;
        let ticket = client.submit(event).map_err(|e: LinkError| e.to_string())?;
        self.recompute();
        self.poke.notify_waiters();
        Ok(ticket)
    }
}

/// Serves the mixer on `listener` until `shutdown` resolves; the link is
/// stopped (goodbye to the room) on the way out.
///
/// # Errors
/// If the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    link: Link,
    access: Access,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let first = mixer::state(
        &link.status(),
        &Pending::default(),
        link.waited(),
        link.give_up(),
    );
    let (state, _) = watch::channel(Arc::new(first));
    let hub = Arc::new(Hub {
        link,
        held: Mutex::new(mixer::Held::default()),
        state,
        poke: Notify::new(),
        access,
        page: page(),
    });
    let ticker = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut status = hub.link.subscribe();
            loop {
                tokio::select! {
                    r = status.changed() => if r.is_err() { break },
                    () = tokio::time::sleep(REFRESH) => {}
                    () = hub.poke.notified() => {}
                }
                hub.recompute();
            }
        })
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/ws", get(ws))
        .route("/api/state", get(api_state))
        .route("/api/act", post(api_act))
        .layer(middleware::from_fn_with_state(hub.clone(), gate))
        .with_state(hub.clone());
    // Each HTTP connection votes as one client, with a queue of its own.
    let clients = hub.clone();
    let per_connection = move |_: SocketAddr| Arc::new(clients.link.client());
    let result = server::serve(
        listener,
        server::with_request_timeout(app),
        per_connection,
        shutdown,
    )
    .await;
    ticker.abort();
    hub.link.stop().await;
    result
}

/// The token a request presents: `?token=` or `Authorization: Bearer`.
fn presented_token<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> Option<&'a str> {
    let from_query = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    from_query.or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

async fn gate(State(hub): State<Arc<Hub>>, req: HttpRequest, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let token = presented_token(req.uri().query(), headers);
    match hub.access.allows(token, host) {
        Ok(()) => next.run(req).await,
        Err(denied) => {
            debug!(uri = %req.uri().path(), "refused: {denied}");
            (StatusCode::UNAUTHORIZED, denied.to_string()).into_response()
        }
    }
}

async fn index(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(hub.page.clone()),
    )
}

async fn api_state(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    hub.recompute();
    let st = hub.state.borrow().clone();
    axum::Json((*st).clone())
}

/// What `POST /api/act` answers.
#[derive(Serialize)]
#[serde(untagged)]
enum ActReply {
    /// The vote was cast with this sequence number.
    Cast {
        /// Its sequence number.
        seq: u32,
    },
    /// Refused, and why.
    Refused {
        /// For a person.
        error: String,
    },
}

async fn api_act(
    State(hub): State<Arc<Hub>>,
    Extension(client): Extension<Arc<Client>>,
    axum::Json(req): axum::Json<Action>,
) -> (StatusCode, axum::Json<ActReply>) {
    let cast = match hub.act(&client, &req) {
        Ok(ticket) => ticket.cast().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match cast {
        Ok(seq) => (StatusCode::OK, axum::Json(ActReply::Cast { seq })),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            axum::Json(ActReply::Refused { error }),
        ),
    }
}

async fn ws(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Err(denied) = Access::origin_ok(origin, host) {
        info!(?origin, "WebSocket refused: {denied}");
        return (StatusCode::FORBIDDEN, denied.to_string()).into_response();
    }
    upgrade
        .max_message_size(4096)
        .on_upgrade(move |socket| session(hub, socket))
}

/// What the server sends over the WebSocket.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    /// The mixer's state, whenever it changed.
    State {
        /// The state.
        state: &'a MixerState,
    },
    /// An action was cast as a vote.
    Cast {
        /// Its sequence number.
        seq: u32,
    },
    /// An action was refused.
    Error {
        /// Why, for a person.
        message: String,
    },
}

impl ServerMessage<'_> {
    fn to_message(&self) -> Message {
        // Plain data: serializing cannot fail, but say so if it did.
        Message::text(
            serde_json::to_string(self).unwrap_or_else(|e| {
                format!(r#"{{"type":"error","message":"cannot encode: {e}"}}"#)
            }),
        )
    }
}

fn state_message(st: &MixerState) -> Message {
    ServerMessage::State { state: st }.to_message()
}

/// One page's live connection: it votes as one client, with a queue of
/// its own, so a page that sends fast delays only itself.
async fn session(hub: Arc<Hub>, mut socket: WebSocket) {
    let client = hub.link.client();
    // Each vote's outcome arrives once its turn came; at most
    // `ballot::CLIENT_QUEUE` are outstanding, each a small task.
    let (replies_tx, mut replies) = mpsc::channel::<Result<u32, String>>(8);
    let mut states = hub.state.subscribe();
    let first = states.borrow_and_update().clone();
    if socket.send(state_message(&first)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            changed = states.changed() => {
                if changed.is_err() { break; }
                let st = states.borrow_and_update().clone();
                if socket.send(state_message(&st)).await.is_err() { break; }
            }
            Some(reply) = replies.recv() => {
                let msg = match reply {
                    Ok(seq) => ServerMessage::Cast { seq },
                    Err(message) => ServerMessage::Error { message },
                };
                if socket.send(msg.to_message()).await.is_err() { break; }
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                let queued = serde_json::from_str::<Action>(text.as_str())
                    .map_err(|e| format!("bad request: {e}"))
                    .and_then(|req| hub.act(&client, &req));
                match queued {
                    Ok(ticket) => {
                        let tx = replies_tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(ticket.cast().await.map_err(|e| e.to_string())).await;
                        });
                    }
                    Err(message) => {
                        let msg = ServerMessage::Error { message };
                        if socket.send(msg.to_message()).await.is_err() { break; }
                    }
                }
            }
        }
    }
}

/// Binds the mixer's listener.
///
/// # Errors
/// If the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        let p = page();
        assert!(!p.contains("/*STYLE*/") && !p.contains("/*SCRIPT*/"));
        assert!(p.contains("new WebSocket"));
        // No CDN, no external fetches.
        assert!(
            !p.contains("https://"),
            "the page loads nothing from elsewhere"
        );
        assert!(p.contains("viewport"), "phone screens");
    }

    #[test]
    fn token_from_query_or_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_token(Some("a=1&token=xyz"), &h), Some("xyz"));
        assert_eq!(presented_token(None, &h), None);
        h.insert(
            header::AUTHORIZATION,
            "Bearer abc".parse().expect("header value"),
        );
        assert_eq!(presented_token(None, &h), Some("abc"));
    }
}
