//! What reaches the worker, and how: one queue of [`Input`]s in arrival order, and an urgent lane
//! beside it that is looked at before anything queued and between every two bundles of a pass.
//!
//! The watcher, the HTTP layer and (with missions) step supervisors and timers hold a [`Post`];
//! the worker alone holds the [`Inbox`]. File hints are only reasons to look (they coalesce into
//! one pass); the inputs missions add (a step's exit, a resolved decision, a due timer) are facts
//! the worker must not lose, which is why this is a queue and not a flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::watch::Hint;

/// Something for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Input {
    /// Something in the vault may have changed.
    Hint(Hint),
    /// Only a wake-up: something was put in the urgent lane.
    Urgent,
}

/// What the worker found when it looked.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Stop was asked for: nothing else is taken.
    Stop,
    /// The next input, in arrival order.
    Input(Input),
    /// Nothing came within the wait.
    Idle,
    /// Every sender is gone.
    Closed,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(super) struct Post {
    queue: mpsc::Sender<Input>,
    stop: Arc<AtomicBool>,
}

impl Post {
    /// Queues `input` (ignored once the worker is gone).
    pub(super) fn send(&self, input: Input) {
        let _ = self.queue.send(input);
    }

    /// Queues a file hint.
    pub(super) fn hint(&self, hint: Hint) {
        self.send(Input::Hint(hint));
    }

    /// Asks the worker to stop: seen before anything queued, and between bundles.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.send(Input::Urgent);
    }

    /// Whether stop was asked for.
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The worker's side.
pub(super) struct Inbox {
    queue: mpsc::Receiver<Input>,
    stop: Arc<AtomicBool>,
}

/// A new inbox and the post that feeds it.
pub(super) fn inbox() -> (Post, Inbox) {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    (
        Post {
            queue: tx,
            stop: stop.clone(),
        },
        Inbox { queue: rx, stop },
    )
}

impl Inbox {
    /// Whether stop was asked for.
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits up to `wait` for the next input; the urgent lane first, before and after waiting.
    pub(super) fn next(&self, wait: Duration) -> Next {
        if self.stopping() {
            return Next::Stop;
        }
        let got = self.queue.recv_timeout(wait);
        if self.stopping() {
            return Next::Stop;
        }
        match got {
            Ok(Input::Urgent) => Next::Idle,
            Ok(input) => Next::Input(input),
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// The next input already queued, without waiting (`None` also once stop is asked for).
    pub(super) fn try_next(&self) -> Option<Input> {
        if self.stopping() {
            return None;
        }
        loop {
            match self.queue.try_recv().ok()? {
                Input::Urgent if !self.stopping() => continue,
                Input::Urgent => return None,
                input => return Some(input),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_goes_ahead_of_everything_queued() {
        let (post, inbox) = inbox();
        post.hint(Hint::Bundles);
        post.hint(Hint::Notes("a.md".into()));
        assert_eq!(
            inbox.next(Duration::ZERO),
            Next::Input(Input::Hint(Hint::Bundles))
        );
        post.stop();
        assert_eq!(inbox.next(Duration::from_secs(5)), Next::Stop);
        assert_eq!(inbox.try_next(), None);
        assert!(post.stopping());
    }

    #[test]
    fn inputs_arrive_in_order_and_silence_is_idle() {
        let (post, inbox) = inbox();
        assert_eq!(inbox.next(Duration::from_millis(1)), Next::Idle);
        post.hint(Hint::Notes("a.md".into()));
        post.hint(Hint::Rescan);
        assert_eq!(
            inbox.try_next(),
            Some(Input::Hint(Hint::Notes("a.md".into())))
        );
        assert_eq!(inbox.try_next(), Some(Input::Hint(Hint::Rescan)));
        assert_eq!(inbox.try_next(), None);
        drop(post);
        assert_eq!(inbox.next(Duration::from_millis(1)), Next::Closed);
    }
}
