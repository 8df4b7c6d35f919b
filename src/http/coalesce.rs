//! One answer for every request of a short window. A flood of requests for
//! the status view (or the metrics) costs the supervisor one status view
//! (or one encoding) per window, however many clients ask: the first asks,
//! the others wait for it and share its answer. An answer is shared only
//! among requests that saw the same count of changes (limits set, processes
//! killed, a reload: [`crate::command::Handle::changes`]), so a client that
//! changed something, from whichever door, never reads the view from before.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How long an answer is served to later requests.
pub const WINDOW: Duration = Duration::from_millis(200);

pub struct Coalesced<T> {
    window: Duration,
    last: Mutex<Option<(Instant, u64, T)>>,
}

impl<T: Clone> Coalesced<T> {
    pub fn new(window: Duration) -> Coalesced<T> {
        Coalesced {
            window,
            last: Mutex::new(None),
        }
    }

    /// The answer of the last `window` made at `changes`, or a new one
    /// from `make`.
    pub async fn get<F, Fut>(&self, changes: u64, make: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        // Held while making: whoever comes meanwhile waits for this answer.
        let mut last = self.last.lock().await;
        if let Some((at, made_at, answer)) = last.as_ref() {
            if at.elapsed() < self.window && *made_at == changes {
                return answer.clone();
            }
        }
        let answer = make().await;
        *last = Some((Instant::now(), changes, answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_flood_makes_one_answer_per_window() {
        let made = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(Coalesced::new(Duration::from_secs(60)));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (made, cache) = (made.clone(), cache.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(7, || async {
                        tokio::task::yield_now().await;
                        made.fetch_add(1, Ordering::SeqCst)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 0, "every request got the first answer");
        }
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_new_answer_after_the_window() {
        let cache = Coalesced::new(Duration::ZERO);
        assert_eq!(cache.get(0, || async { 1 }).await, 1);
        assert_eq!(cache.get(0, || async { 2 }).await, 2);
    }

    #[tokio::test]
    async fn a_change_makes_a_new_answer_within_the_window() {
        let cache = Coalesced::new(Duration::from_secs(60));
        assert_eq!(cache.get(0, || async { 1 }).await, 1);
        assert_eq!(cache.get(0, || async { 2 }).await, 1);
        assert_eq!(cache.get(1, || async { 3 }).await, 3);
        assert_eq!(cache.get(1, || async { 4 }).await, 3);
    }
}
