//! Arming: which of a job's idle members sleep on gearmand.
//!
//! gearmand wakes every sleeping worker connection of a function with a
//! `NOOP` for each job it queues (see [`super::wakeup`] for the flags behind
//! it); each then sends `GRAB_JOB`, one gets the job, the others get
//! `NO_JOB` and `PRE_SLEEP` again. With 1,000 idle processes of a job that
//! is some 3,000 packets per job, and a warm pool makes every job slower.
//! No setting of the worker side changes what gearmand does, but the driver
//! holds all of its members' connections, so it decides which of them sleep
//! on gearmand at all.
//!
//! A job's idle members are either *watching* (a `GRAB_JOB` in flight, or
//! asleep on gearmand after `PRE_SLEEP`, so gearmand wakes them) or
//! *resting* (connected and registered, but silent: no `PRE_SLEEP`, so
//! gearmand never wakes them). [`ARMED`] of them watch; the rest rest, the
//! most recently idle on top so that a few warm processes do the work and
//! the others can be reaped. What keeps "never a job left waiting while an
//! idle member exists":
//!
//! - A watching member that takes a job calls the top resting member, which
//!   asks gearmand at once (`GRAB_JOB`), so the watchers are refilled before
//!   anything else happens. A job queued meanwhile is seen by that
//!   `GRAB_JOB`, or by the `PRE_SLEEP` after its `NO_JOB` (gearmand answers a
//!   `PRE_SLEEP` with `NOOP` at once when work is queued).
//! - A called (or just started) member that finds a job has met a backlog:
//!   work was queued with no member asking. It calls two members, its
//!   replacement and one more, whatever the count. A burst thus reaches the
//!   idle members in a doubling wave, a few round trips for hundreds of
//!   jobs, instead of one by one. A member that finds its next job with
//!   its answer has not: that is a busy pool's steady flow, and its
//!   siblings' asks would come back empty.
//! - A watcher that gets `NO_JOB` rests only when more than [`ARMED`]
//!   members watch, so the count never drops below [`ARMED`] that way; it
//!   drops only when a watcher takes a job or leaves, and both call a
//!   resting member first.
//! - A member that finished its job asks for the next one in the same
//!   write as the answer (it costs no extra write, and a saturated pool
//!   takes its next job without any wake-up), and rests after `NO_JOB`
//!   like any watcher.
//!
//! Nothing changes in how jobs are taken: each member still grabs only for
//! itself, while idle, so no job is grabbed that no process can run, and a
//! job in flight when its member dies goes back to gearmand with that
//! member's connection. Cold starts do not involve this: a job with no
//! member is watched by [`super::wakeup`].

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// How many of a job's idle members watch gearmand. Each is woken for
/// every job queued, so one is the least herd; a burst grows the watchers
/// by itself (see the module doc).
pub const ARMED: usize = 1;

/// One job's arming: shared by its members.
#[derive(Clone, Default)]
pub struct Arming {
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// Members watching, and members called but not yet asking.
    watching: usize,
    /// Resting members, the most recently idle last; each with how to call it.
    resting: Vec<(u64, mpsc::Sender<()>)>,
    next_id: u64,
}

impl Shared {
    /// Calls up to `n` resting members (each then counts as watching).
    fn call(&mut self, n: usize) {
        for _ in 0..n {
            let Some((_, caller)) = self.resting.pop() else {
                return;
            };
            // The channel holds one call and a member is called once per rest.
            let _ = caller.try_send(());
            self.watching += 1;
        }
    }

    /// Calls resting members until [`ARMED`] watch.
    fn refill(&mut self) {
        self.call(ARMED.saturating_sub(self.watching));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Busy, starting or closed: neither watching nor resting.
    Away,
    Watching,
    Resting,
}

impl Arming {
    pub fn new() -> Arming {
        Arming::default()
    }

    /// A member's place in this job's arming; it starts away.
    pub fn seat(&self) -> Seat {
        let id = {
            let mut s = self.lock();
            s.next_id += 1;
            s.next_id
        };
        let (caller, called) = mpsc::channel(1);
        Seat {
            arming: self.clone(),
            id,
            caller,
            called,
            place: Place::Away,
        }
    }

    /// How many members watch and how many rest.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.watching, s.resting.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // The state stays consistent even if a holder panicked.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One member's place: watching, resting or away.
pub struct Seat {
    arming: Arming,
    id: u64,
    caller: mpsc::Sender<()>,
    called: mpsc::Receiver<()>,
    place: Place,
}

impl Seat {
    pub fn is_resting(&self) -> bool {
        self.place == Place::Resting
    }

    /// The member asks gearmand (after starting or finishing a job, or
    /// woken by a `NOOP` while resting, which only a stale sleep can cause).
    pub fn watch(&mut self) {
        match self.place {
            Place::Watching => {}
            Place::Away => {
                self.arming.lock().watching += 1;
                self.place = Place::Watching;
            }
            Place::Resting => {
                let mut s = self.arming.lock();
                match s.resting.iter().position(|(id, _)| *id == self.id) {
                    Some(i) => {
                        s.resting.remove(i);
                        s.watching += 1;
                    }
                    // Called meanwhile: already counted; drop the call.
                    None => while self.called.try_recv().is_ok() {},
                }
                self.place = Place::Watching;
            }
        }
    }

    /// Every server said `NO_JOB`: true when the member should rest rather
    /// than sleep on gearmand, because enough others watch.
    pub fn rest_after_no_job(&mut self) -> bool {
        if self.place != Place::Watching {
            return false;
        }
        let mut s = self.arming.lock();
        if s.watching <= ARMED {
            return false;
        }
        s.watching -= 1;
        s.resting.push((self.id, self.caller.clone()));
        self.place = Place::Resting;
        true
    }

    /// The member took a job. `backlog`: work was queued with no member
    /// asking for it; call two to spread it.
    pub fn took_job(&mut self, backlog: bool) {
        let mut s = self.arming.lock();
        if self.place == Place::Watching {
            s.watching -= 1;
        }
        self.place = Place::Away;
        if backlog {
            s.call(2);
        }
        s.refill();
    }

    /// Waits until a sibling calls this resting member; it then watches.
    /// Cancel-safe.
    pub async fn called(&mut self) {
        if self.called.recv().await.is_some() {
            self.place = Place::Watching;
        }
    }

    /// The member stops: a watcher is replaced by a resting member.
    pub fn leave(&mut self) {
        let mut s = self.arming.lock();
        let was_watching = match self.place {
            Place::Away => false,
            Place::Watching => true,
            Place::Resting => match s.resting.iter().position(|(id, _)| *id == self.id) {
                Some(i) => {
                    s.resting.remove(i);
                    false
                }
                // Called but not yet asking: counted as watching.
                None => true,
            },
        };
        if was_watching {
            s.watching -= 1;
            s.refill();
        }
        self.place = Place::Away;
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seats(arming: &Arming, n: usize) -> Vec<Seat> {
        (0..n).map(|_| arming.seat()).collect()
    }

    /// Starts every member and lets the watchers' first asks come back empty.
    fn settle(seats: &mut [Seat]) {
        for s in seats.iter_mut() {
            s.watch();
        }
        for s in seats.iter_mut() {
            s.rest_after_no_job();
        }
    }

    fn was_called(seat: &mut Seat) -> bool {
        if seat.called.try_recv().is_ok() {
            seat.place = Place::Watching;
            true
        } else {
            false
        }
    }

    #[test]
    fn an_idle_pool_keeps_armed_watchers_and_rests_the_others() {
        let arming = Arming::new();
        let mut s = seats(&arming, 10);
        settle(&mut s);
        assert_eq!(arming.counts(), (ARMED, 10 - ARMED));
        assert_eq!(s.iter().filter(|s| s.is_resting()).count(), 10 - ARMED);
    }

    #[test]
    fn a_watcher_taking_a_job_calls_the_most_recently_idle_member() {
        let arming = Arming::new();
        let mut s = seats(&arming, 4);
        settle(&mut s);
        let watcher = s.iter().position(|s| !s.is_resting()).unwrap();
        s[watcher].took_job(false);
        let called: Vec<usize> = (0..4).filter(|&i| was_called(&mut s[i])).collect();
        // Seats 0, 1 and 2 rested in that order; 3 watched.
        assert_eq!(watcher, 3);
        assert_eq!(called, vec![2], "the last to rest is called first");
        assert_eq!(arming.counts(), (ARMED, 4 - ARMED - 1));
    }

    #[test]
    fn a_backlog_calls_one_more_so_a_burst_doubles() {
        let arming = Arming::new();
        let mut s = seats(&arming, 64);
        settle(&mut s);
        // Every member that asks finds a job: count the rounds until all are busy.
        let mut asking: Vec<usize> = (0..64).filter(|&i| !s[i].is_resting()).collect();
        let mut rounds = 0;
        let mut first = true;
        while !asking.is_empty() {
            rounds += 1;
            for &i in &asking {
                s[i].took_job(!first);
            }
            first = false;
            asking = (0..64).filter(|&i| was_called(&mut s[i])).collect();
        }
        assert_eq!(arming.counts(), (0, 0), "every member took a job");
        assert!(rounds <= 8, "64 members reached in {rounds} rounds");
    }

    #[test]
    fn finished_members_ask_and_all_but_one_rest_when_nothing_is_queued() {
        let arming = Arming::new();
        let mut s = seats(&arming, 2);
        settle(&mut s);
        let watcher = s.iter().position(|s| !s.is_resting()).unwrap();
        let other = 1 - watcher;
        // The watcher takes a job; the other is called, asks, takes one too.
        s[watcher].took_job(false);
        assert!(was_called(&mut s[other]));
        s[other].took_job(false);
        assert_eq!(arming.counts(), (0, 0));
        s[watcher].watch();
        s[other].watch();
        assert!(s[watcher].rest_after_no_job(), "another watches: rest");
        assert!(!s[other].rest_after_no_job(), "the last watcher sleeps");
        assert_eq!(arming.counts(), (1, 1));
    }

    #[test]
    fn a_leaving_watcher_is_replaced_and_a_called_member_that_leaves_too() {
        let arming = Arming::new();
        let mut s = seats(&arming, 3);
        settle(&mut s);
        let watcher = s.iter().position(|s| !s.is_resting()).unwrap();
        let mut left = s.remove(watcher);
        left.leave();
        // The called member leaves before it asked: the last one is called.
        let called = s.iter().position(|s| s.called.len() == 1).unwrap();
        drop(s.remove(called));
        assert!(was_called(&mut s[0]));
        assert_eq!(arming.counts(), (1, 0));
        drop(left);
        assert_eq!(arming.counts(), (1, 0), "leaving twice counts once");
    }

    #[test]
    fn watchers_never_drop_to_zero_while_members_rest() {
        let arming = Arming::new();
        let mut s = seats(&arming, 8);
        settle(&mut s);
        // A mix of takes, answers and empty asks, checking after each step.
        for round in 0..50 {
            let i = round % 8;
            if !s[i].is_resting() && s[i].place == Place::Watching {
                s[i].took_job(round % 3 == 0);
            } else if s[i].place == Place::Away {
                s[i].watch();
                s[i].rest_after_no_job();
            }
            for seat in s.iter_mut() {
                if was_called(seat) {
                    seat.rest_after_no_job();
                }
            }
            let (watching, resting) = arming.counts();
            assert!(
                resting == 0 || watching >= ARMED,
                "round {round}: {watching} watching, {resting} resting"
            );
        }
    }
}
