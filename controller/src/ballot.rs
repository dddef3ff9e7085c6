//! The controller's votes on their way into its member: each client (a
//! page's WebSocket, an HTTP connection, the CLI) queues its own, a feeder
//! hands them to the member in fair turns ([`crate::fair`]), and what is
//! queued or cast shows as pending ([`crate::pending`]) until applied.
//!
//! The member takes at most [`MEMBER_SLOTS`] of our votes at a time (it
//! casts one a round; one more waits behind it so that no round is lost),
//! so its own queue never fills and the order in which clients are served
//! is decided here, round-robin, not by who sent fastest.
//!
//! Invariant: a vote is in exactly one place at any time — a client's
//! queue, in transit to the member, or the member (by sequence number) —
//! and shows as pending in each of them, so a page never sees its vote
//! flicker out of pending before it is applied.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use autoharmonize_node::status::{Command, NodeStatus};
use autoharmonize_protocol::Channel;
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::member::CastError;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::debug;

use crate::fair::FairQueue;
use crate::link::{self, LinkError};
use crate::pending::Pending;

/// Votes one client may have waiting for their turn. A person clicks
/// faster than the room decides (a round each) only for a moment; a
/// client past this is sending faster than anyone can follow.
pub const CLIENT_QUEUE: usize = 4;

/// Clients that may have votes waiting at once.
pub const MAX_CLIENTS: usize = 64;

/// Our votes the member holds at most (its queue takes 16).
pub const MEMBER_SLOTS: usize = 2;

/// Identifies a client of this controller.
pub type ClientId = u64;

/// A vote waiting for its turn.
struct Queued {
    event: Event,
    reply: oneshot::Sender<Result<u32, LinkError>>,
}

struct State {
    queue: FairQueue<ClientId, Queued>,
    /// Votes cast in the member, until applied or dropped.
    pending: Pending,
    /// The channel of the vote being handed to the member right now.
    in_transit: Option<Channel>,
    next_client: ClientId,
}

/// The shared state of the controller's votes; see the module docs.
pub(crate) struct Ballot {
    state: Mutex<State>,
    /// Wakes the feeder: a vote was queued.
    wake: Notify,
    status: watch::Receiver<Arc<NodeStatus>>,
}

impl Ballot {
    pub(crate) fn new(status: watch::Receiver<Arc<NodeStatus>>) -> Arc<Ballot> {
        Arc::new(Ballot {
            state: Mutex::new(State {
                queue: FairQueue::new(CLIENT_QUEUE, MAX_CLIENTS),
                pending: Pending::default(),
                in_transit: None,
                next_client: 1,
            }),
            wake: Notify::new(),
            status,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new client with a queue of its own.
    pub(crate) fn client(self: &Arc<Ballot>) -> Client {
        let mut s = self.lock();
        let id = s.next_client;
        s.next_client += 1;
        Client {
            id,
            ballot: Arc::clone(self),
        }
    }

    /// Settles the cast votes against the latest status.
    fn settle(&self, s: &mut State) -> Arc<NodeStatus> {
        let st = self.status.borrow().clone();
        for v in s
            .pending
            .settle(st.mesh_time_ns, |seq| link::outcome(&st, seq))
        {
            debug!(seq = v.seq, applied = v.applied, "vote settled");
        }
        st
    }

    /// Every vote of ours not yet applied: queued, in transit or cast.
    pub(crate) fn pending(&self) -> Pending {
        let mut s = self.lock();
        self.settle(&mut s);
        let mut p = s.pending.clone();
        let queued: Vec<Channel> = s
            .queue
            .iter()
            .map(|q| q.event.channel())
            .chain(s.in_transit)
            .collect();
        p.set_queued(queued);
        p
    }

    /// The next vote in turn, if the member has a slot for it; marked in
    /// transit.
    fn next_turn(&self) -> Option<Queued> {
        let mut s = self.lock();
        let st = self.settle(&mut s);
        if s.pending.in_member(|seq| link::outcome(&st, seq)) >= MEMBER_SLOTS {
            return None;
        }
        while let Some((_, q)) = s.queue.pop() {
            // Its asker gave up (an HTTP request cancelled): not cast.
            if q.reply.is_closed() {
                continue;
            }
            s.in_transit = Some(q.event.channel());
            return Some(q);
        }
        None
    }

    /// Hands queued votes to the member, in turn, while it has slots; runs
    /// until the member's status channel closes (the mesh loop stopped).
    pub(crate) async fn feed(self: Arc<Ballot>, commands: mpsc::Sender<Command>) {
        let mut status = self.status.clone();
        loop {
            while let Some(q) = self.next_turn() {
                let result = cast_in_member(&commands, q.event).await;
                {
                    let mut s = self.lock();
                    s.in_transit = None;
                    if let Ok(seq) = result {
                        s.pending.cast(seq, q.event.channel());
                    }
                }
                let _ = q.reply.send(result);
            }
            tokio::select! {
                () = self.wake.notified() => {}
                changed = status.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Casts `event` in the member.
async fn cast_in_member(commands: &mpsc::Sender<Command>, event: Event) -> Result<u32, LinkError> {
    let (tx, rx) = oneshot::channel();
    commands
        .send(Command::Cast(event, tx))
        .await
        .map_err(|_| LinkError::Stopped)?;
    match rx.await.map_err(|_| LinkError::Stopped)? {
        Ok(seq) => Ok(seq),
        Err(CastError::ReadOnly) => Err(LinkError::ReadOnly),
        Err(e) => Err(LinkError::Refused(e)),
    }
}

/// One client's way to vote: its own queue. Dropping it drops the votes
/// still waiting in it.
pub struct Client {
    id: ClientId,
    ballot: Arc<Ballot>,
}

/// A vote queued for its turn; await [`Ticket::cast`] for its sequence
/// number once the member took it.
pub struct Ticket(oneshot::Receiver<Result<u32, LinkError>>);

impl Ticket {
    /// The vote's sequence number in the member, once it is cast.
    ///
    /// # Errors
    /// As [`crate::link::Link::cast`].
    pub async fn cast(self) -> Result<u32, LinkError> {
        self.0.await.unwrap_or(Err(LinkError::Stopped))
    }
}

impl Client {
    /// Queues `event` behind this client's earlier votes; it shows as
    /// pending at once.
    ///
    /// # Errors
    /// [`LinkError::Busy`] when this client already has
    /// [`CLIENT_QUEUE`] votes waiting (or too many clients have).
    pub fn submit(&self, event: Event) -> Result<Ticket, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.ballot
            .lock()
            .queue
            .push(self.id, Queued { event, reply })?;
        self.ballot.wake.notify_one();
        Ok(Ticket(rx))
    }

    /// Queues `event` and waits until the member has cast it.
    ///
    /// # Errors
    /// As [`Client::submit`] and [`Ticket::cast`].
    pub async fn cast(&self, event: Event) -> Result<u32, LinkError> {
        self.submit(event)?.cast().await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let dropped = self.ballot.lock().queue.remove(self.id);
        if !dropped.is_empty() {
            debug!(
                client = self.id,
                votes = dropped.len(),
                "client gone: its queued votes dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoharmonize_node::status::OwnVoteStatus;
    use autoharmonize_protocol::transport::Gain;
    use std::time::Duration;

    /// A stand-in for the mesh loop: numbers every cast from 1 and tells
    /// the test which event it was.
    fn fake_member() -> (mpsc::Sender<Command>, mpsc::UnboundedReceiver<(u32, Event)>) {
        let (tx, mut rx) = mpsc::channel::<Command>(16);
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut seq = 0;
            while let Some(Command::Cast(event, reply)) = rx.recv().await {
                seq += 1;
                let _ = seen_tx.send((seq, event));
                let _ = reply.send(Ok(seq));
            }
        });
        (tx, seen)
    }

    /// A status in which votes `decided` are decided, the rest pending.
    fn status(decided: &[u32]) -> Arc<NodeStatus> {
        Arc::new(NodeStatus {
            room: Some("1/00000000000000aa".into()),
            own_votes: (1..=8)
                .map(|seq| OwnVoteStatus {
                    seq,
                    state: if decided.contains(&seq) {
                        "decided".into()
                    } else {
                        "pending".into()
                    },
                    event: volume(1).into(),
                    apply_at: None,
                })
                .collect(),
            ..NodeStatus::default()
        })
    }

    fn volume(g: u8) -> Event {
        Event::Volume {
            channel: Channel::Stem(1),
            gain: Gain(g),
        }
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<(u32, Event)>) -> Event {
        tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("a cast in time")
            .expect("the member runs")
            .1
    }

    #[tokio::test]
    async fn a_fast_client_fills_only_its_own_queue_and_others_keep_their_turn() {
        let (status_tx, status_rx) = watch::channel(status(&[]));
        let ballot = Ballot::new(status_rx);
        let (commands, mut seen) = fake_member();
        tokio::spawn(Arc::clone(&ballot).feed(commands));
        let fast = ballot.client();
        let other = ballot.client();

        // The fast client sends more than its queue holds. The first may
        // already be with the member, so one more fits than CLIENT_QUEUE.
        let mut tickets = Vec::new();
        let mut refused = None;
        for g in 1..=10 {
            match fast.submit(volume(g)) {
                Ok(t) => tickets.push(t),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(
                refused,
                Some(LinkError::Busy(crate::fair::Refusal::ClientFull(
                    CLIENT_QUEUE
                )))
            ),
            "{refused:?}"
        );
        assert!(
            tickets.len() <= CLIENT_QUEUE + MEMBER_SLOTS,
            "{}",
            tickets.len()
        );
        // Another person presses play: queued, pending at once.
        let play = Event::Play {
            channel: Channel::All,
        };
        let ticket = other.submit(play).expect("its own queue has room");
        assert!(ballot.pending().is_pending(Channel::All));

        // The member takes two of ours at a time; the play comes second or
        // third, not after the fast client's whole queue.
        let mut order = vec![next(&mut seen).await, next(&mut seen).await];
        assert!(
            seen.try_recv().is_err(),
            "the member got more than {MEMBER_SLOTS} at once"
        );
        if !order.contains(&play) {
            status_tx.send_replace(status(&[1]));
            order.push(next(&mut seen).await);
        }
        assert_eq!(order.last(), Some(&play), "{order:?}");
        let seq = ticket.cast().await.expect("cast");
        assert_eq!(usize::try_from(seq).ok(), Some(order.len()));

        // The rest of the fast client's votes follow as slots free.
        status_tx.send_replace(status(&[1, 2, 3, 4, 5, 6, 7, 8]));
        let rest = tickets.len();
        for t in tickets {
            t.cast().await.expect("cast in turn");
        }
        let mut fast_votes = order.iter().filter(|e| **e != play).count();
        while seen.try_recv().is_ok() {
            fast_votes += 1;
        }
        assert_eq!(fast_votes, rest, "each accepted vote cast once");
    }

    #[tokio::test]
    async fn a_client_that_goes_away_takes_its_queued_votes_with_it() {
        let (_status_tx, status_rx) = watch::channel(status(&[]));
        let ballot = Ballot::new(status_rx);
        let (commands, mut seen) = fake_member();
        tokio::spawn(Arc::clone(&ballot).feed(commands));
        let gone = ballot.client();
        // Held: a vote whose asker stopped waiting is not cast at all.
        let _tickets: Vec<Ticket> = (1..=4)
            .map(|g| gone.submit(volume(g)).expect("room for it"))
            .collect();
        // Two reach the member (its slots); the others wait.
        next(&mut seen).await;
        next(&mut seen).await;
        drop(gone);
        let p = ballot.pending();
        // The two in the member still pend; nothing is queued any more.
        assert_eq!(p.in_member(|_| crate::pending::Outcome::Waiting), 2);
        assert!(ballot.lock().queue.is_empty());
    }
}
