//! Fair turns for the people steering one controller: each client (a page's
//! WebSocket, an HTTP connection to the API, the CLI) has its own small
//! queue of votes, and the controller's member takes them round-robin, one
//! client after another.
//!
//! Why: the member queues at most `MAX_QUEUED_VOTES` (16) own votes and
//! casts one per round. Fed first come, first served, one page sending
//! votes fast (a slider dragged, a script in a loop) filled that queue, and
//! another person's `play` was refused. Here a client that sends faster
//! than the room decides fills only its own queue and is told so; the
//! others keep their turn.
//!
//! Invariant: bounded. At most `per_client` votes per client and at most
//! `max_clients` clients with votes waiting; a client whose queue empties
//! is forgotten until it votes again.

use std::collections::{BTreeMap, VecDeque};

/// Why a vote was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// This client already has this many votes waiting for their turn.
    #[error(
        "{0} of your votes are already waiting for their turn: wait until the room has decided them"
    )]
    ClientFull(usize),
    /// This many other clients have votes waiting.
    #[error("{0} others are voting at once: try again in a moment")]
    TooManyClients(usize),
}

/// Per-client queues of `T`, served round-robin by client `K`.
#[derive(Debug)]
pub struct FairQueue<K, T> {
    queues: BTreeMap<K, VecDeque<T>>,
    /// Clients with votes waiting, in the order of their next turn.
    turns: VecDeque<K>,
    per_client: usize,
    max_clients: usize,
}

impl<K: Ord + Copy, T> FairQueue<K, T> {
    /// Queues of at most `per_client` items, for at most `max_clients`
    /// clients at once.
    #[must_use]
    pub fn new(per_client: usize, max_clients: usize) -> FairQueue<K, T> {
        FairQueue {
            queues: BTreeMap::new(),
            turns: VecDeque::new(),
            per_client,
            max_clients,
        }
    }

    /// Queues `item` for `client`, behind its own earlier ones.
    ///
    /// # Errors
    /// [`Refusal::ClientFull`] or [`Refusal::TooManyClients`]; nothing is
    /// queued then.
    pub fn push(&mut self, client: K, item: T) -> Result<(), Refusal> {
        let clients = self.queues.len();
        match self.queues.get_mut(&client) {
            Some(q) if q.len() >= self.per_client => Err(Refusal::ClientFull(q.len())),
            Some(q) => {
                q.push_back(item);
                Ok(())
            }
            None if clients >= self.max_clients => Err(Refusal::TooManyClients(clients)),
            None => {
                self.queues.insert(client, VecDeque::from([item]));
                self.turns.push_back(client);
                Ok(())
            }
        }
    }

    /// The next item in turn: the oldest of the client whose turn it is,
    /// who then goes to the back of the line.
    pub fn pop(&mut self) -> Option<(K, T)> {
        let client = self.turns.pop_front()?;
        let q = self
            .queues
            .get_mut(&client)
            .expect("every client in turns has a queue");
        let item = q.pop_front().expect("queues in turns are never empty");
        if q.is_empty() {
            self.queues.remove(&client);
        } else {
            self.turns.push_back(client);
        }
        debug_assert_eq!(self.turns.len(), self.queues.len());
        Some((client, item))
    }

    /// Drops `client`'s queue (it went away); returns what was in it.
    pub fn remove(&mut self, client: K) -> Vec<T> {
        self.turns.retain(|&c| c != client);
        self.queues
            .remove(&client)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Every queued item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.queues.values().flatten()
    }

    /// Items queued for `client`.
    #[must_use]
    pub fn queued(&self, client: K) -> usize {
        self.queues.get(&client).map_or(0, VecDeque::len)
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_take_turns_whatever_order_they_sent_in() {
        let mut q = FairQueue::new(4, 8);
        // Client 1 sends four at once, then client 2 one, then client 3.
        for i in 0..4 {
            q.push(1, ("fast", i)).expect("room for it");
        }
        q.push(2, ("play", 0)).expect("its own queue");
        q.push(3, ("pause", 0)).expect("its own queue");
        let order: Vec<(u32, (&str, i32))> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [
                (1, ("fast", 0)),
                (2, ("play", 0)),
                (3, ("pause", 0)),
                (1, ("fast", 1)),
                (1, ("fast", 2)),
                (1, ("fast", 3)),
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_client_is_refused_and_others_are_not() {
        let mut q = FairQueue::new(2, 8);
        assert_eq!(q.push(1, 'a'), Ok(()));
        assert_eq!(q.push(1, 'b'), Ok(()));
        assert_eq!(q.push(1, 'c'), Err(Refusal::ClientFull(2)));
        assert_eq!(q.push(2, 'x'), Ok(()));
        assert_eq!(q.queued(1), 2);
        // Its turn frees a place.
        assert_eq!(q.pop(), Some((1, 'a')));
        assert_eq!(q.push(1, 'c'), Ok(()));
        assert_eq!(q.pop(), Some((2, 'x')));
        assert!(
            Refusal::ClientFull(2)
                .to_string()
                .contains("waiting for their turn")
        );
    }

    #[test]
    fn bounded_in_clients_and_forgets_the_ones_that_left() {
        let mut q = FairQueue::new(1, 2);
        assert_eq!(q.push(1, ()), Ok(()));
        assert_eq!(q.push(2, ()), Ok(()));
        assert_eq!(q.push(3, ()), Err(Refusal::TooManyClients(2)));
        assert_eq!(q.remove(1), vec![()]);
        assert_eq!(q.push(3, ()), Ok(()));
        assert_eq!(q.iter().count(), 2);
        assert_eq!(q.pop(), Some((2, ())));
        assert_eq!(q.pop(), Some((3, ())));
        assert_eq!(q.pop(), None);
        assert!(q.remove(9).is_empty());
    }
}
