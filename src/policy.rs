//! The scaling decision: a pure function from what the supervisor observes
//! (a job's limits, its processes' states, gearmand's queue) to what it
//! should do. No processes, sockets or clocks here; the supervisor applies
//! the returned [`Action`]s.
//!
//! The rules (SPEC "Supervision"):
//! - keep at least `min` processes (unless a crash loop's backoff is in force);
//! - never more than `max`: surplus goes, idle ones now, busy ones after their job;
//! - scale up when jobs wait and no process is idle: start
//!   `min(waiting - starting, max - processes)`, so processes already starting
//!   are not started twice for the same backlog;
//! - scale down only on a fresh poll that shows no waiting job: stop surplus
//!   processes idle for at least `max_idle_time`, longest idle first. A busy
//!   process is never stopped to scale down.

use std::time::{Duration, Instant};

use crate::supervisor::WorkerId;

/// What the supervisor knows of one pool member (a process or an http
/// slot: the policy does not tell them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Spawned, not yet ready for jobs.
    Starting,
    Idle {
        since: Instant,
    },
    Busy,
    /// Asked to stop; no longer counts.
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcView {
    pub id: WorkerId,
    pub state: ProcState,
}

/// One job as the policy sees it. `procs` is walked, not stored: the
/// supervisor decides after every batch of process events, and with 1,000
/// members a vector of their views per batch was an eighth of its time.
#[derive(Debug, Clone)]
pub struct JobView<P> {
    pub min: u32,
    pub max: u32,
    /// The job's members, each time the policy walks them (a cheap clone
    /// of an iterator over them).
    pub procs: P,
    /// Jobs queued and not running, summed over the job's functions and the
    /// servers that answered; `None` when no server answered.
    pub waiting: Option<u64>,
    /// A crash loop's backoff forbids starting processes now.
    pub restart_blocked: bool,
}

/// The moment and the settings a decision is made under.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: Instant,
    pub max_idle_time: Duration,
    /// The queue counts come from a poll just completed (scale-down needs
    /// fresh counts; a backlog may be acted on at any time).
    pub fresh_poll: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start {
        count: u32,
        reason: StartReason,
    },
    /// Stop an idle or starting process now.
    Stop {
        id: WorkerId,
        idle_for: Duration,
    },
    /// Stop a busy process once its current job ends.
    StopAfterJob {
        id: WorkerId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    BelowMin,
    Backlog,
}

/// The members that count, by state, from one walk over them.
#[derive(Default)]
struct Tally {
    live: u64,
    starting: u64,
    idle: u64,
}

impl Tally {
    fn of(procs: impl Iterator<Item = ProcView>) -> Tally {
        let mut t = Tally::default();
        for p in procs {
            match p.state {
                ProcState::Stopping => continue,
                ProcState::Starting => t.starting += 1,
                ProcState::Idle { .. } => t.idle += 1,
                ProcState::Busy => {}
            }
            t.live += 1;
        }
        t
    }
}

fn live<P: Iterator<Item = ProcView>>(procs: P) -> Vec<ProcView> {
    procs.filter(|p| p.state != ProcState::Stopping).collect()
}

pub fn decide<P>(job: &JobView<P>, ctx: &Context) -> Vec<Action>
where
    P: Iterator<Item = ProcView> + Clone,
{
    let tally = Tally::of(job.procs.clone());
    let count = tally.live;
    let (min, max) = (u64::from(job.min), u64::from(job.max));

    if count > max {
        return trim_to_max(&live(job.procs.clone()), (count - max) as usize, ctx.now);
    }

    let mut actions = Vec::new();
    let mut planned = count;
    if planned < min && !job.restart_blocked {
        actions.push(Action::Start {
            count: (min - planned) as u32,
            reason: StartReason::BelowMin,
        });
        planned = min;
    }

    let waiting = job.waiting.unwrap_or(0);
    let any_idle = tally.idle > 0;
    let starting = tally.starting + (planned - count);
    if waiting > 0 && !any_idle && !job.restart_blocked {
        let wanted = waiting
            .saturating_sub(starting)
            .min(max.saturating_sub(planned));
        if wanted > 0 {
            actions.push(Action::Start {
                count: wanted as u32,
                reason: StartReason::Backlog,
            });
        }
        return actions;
    }

    if ctx.fresh_poll && job.waiting == Some(0) && count > min {
        actions.extend(idle_surplus(
            &live(job.procs.clone()),
            (count - min) as usize,
            ctx,
        ));
    }
    actions
}

/// What one member's event changed, as far as [`decide`] cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// It took a job: idle to busy.
    TookJob,
    /// It answered its job: busy to idle.
    AnsweredJob,
    /// Anything else (ready, retiring, exited, handed over, a report).
    Other,
}

/// Whether deciding again after `change` can act, for a job that was
/// decided on before it and has `waiting` jobs queued after it. Every job
/// served brings a `TookJob` and an `AnsweredJob`, and a decision walks all
/// of a job's members: with 1,000 of them, 9 % of the supervisor's CPU
/// under load went to decisions that could not act.
/// - Answering makes a member idle: that starts nothing (a start needs no
///   member idle) and stops nothing (scale-down waits for a fresh poll).
/// - Taking a job can start a process only while jobs wait.
pub fn may_change_decision(change: MemberChange, waiting: u64) -> bool {
    match change {
        MemberChange::AnsweredJob => false,
        MemberChange::TookJob => waiting > 0,
        MemberChange::Other => true,
    }
}

fn idle_for(p: &ProcView, now: Instant) -> Option<Duration> {
    match p.state {
        ProcState::Idle { since } => Some(now.saturating_duration_since(since)),
        _ => None,
    }
}

/// Longest idle first.
fn idle_sorted(live: &[ProcView], now: Instant) -> Vec<(&ProcView, Duration)> {
    let mut idle: Vec<(&ProcView, Duration)> = live
        .iter()
        .filter_map(|p| idle_for(p, now).map(|d| (p, d)))
        .collect();
    idle.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    idle
}

fn idle_surplus(live: &[ProcView], surplus: usize, ctx: &Context) -> Vec<Action> {
    idle_sorted(live, ctx.now)
        .into_iter()
        .filter(|(_, d)| *d >= ctx.max_idle_time)
        .take(surplus)
        .map(|(p, d)| Action::Stop {
            id: p.id,
            idle_for: d,
        })
        .collect()
}

/// Over max (the operator lowered it): starting and idle processes go now,
/// busy ones after their job.
fn trim_to_max(live: &[ProcView], surplus: usize, now: Instant) -> Vec<Action> {
    let starting = live
        .iter()
        .filter(|p| p.state == ProcState::Starting)
        .map(|p| Action::Stop {
            id: p.id,
            idle_for: Duration::ZERO,
        });
    let idle = idle_sorted(live, now)
        .into_iter()
        .map(|(p, d)| Action::Stop {
            id: p.id,
            idle_for: d,
        });
    let busy = live
        .iter()
        .filter(|p| p.state == ProcState::Busy)
        .map(|p| Action::StopAfterJob { id: p.id });
    starting.chain(idle).chain(busy).take(surplus).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: Instant, secs_ago: u64) -> ProcState {
        ProcState::Idle {
            since: now - Duration::from_secs(secs_ago),
        }
    }

    fn w(pid: u32) -> WorkerId {
        WorkerId::process(u64::from(pid - 100), pid)
    }

    #[test]
    fn slots_scale_like_processes() {
        let now = Instant::now();
        let slots = [
            ProcView {
                id: WorkerId::slot(7),
                state: at(now, 30),
            },
            ProcView {
                id: WorkerId::slot(8),
                state: ProcState::Busy,
            },
        ];
        assert_eq!(
            decide(&job(0, 4, &slots, Some(0)), &ctx(now, 10, true)),
            vec![Action::Stop {
                id: WorkerId::slot(7),
                idle_for: Duration::from_secs(30)
            }]
        );
        let busy = [slots[1]];
        assert_eq!(
            decide(&job(0, 4, &busy, Some(5)), &ctx(now, 10, false)),
            vec![Action::Start {
                count: 3,
                reason: StartReason::Backlog
            }]
        );
    }

    fn procs(states: &[ProcState]) -> Vec<ProcView> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| ProcView {
                id: w(100 + i as u32),
                state: *s,
            })
            .collect()
    }

    fn ctx(now: Instant, idle: u64, fresh: bool) -> Context {
        Context {
            now,
            max_idle_time: Duration::from_secs(idle),
            fresh_poll: fresh,
        }
    }

    /// Every job of up to 4 members (each starting, idle, busy or
    /// stopping), limits up to 4 and up to 3 jobs waiting, on which a
    /// decision (not on a fresh poll) has nothing to do: the state the
    /// supervisor leaves a job in after deciding.
    fn settled_jobs(now: Instant) -> Vec<(u32, u32, Vec<ProcView>, u64)> {
        let states = [
            ProcState::Starting,
            at(now, 5),
            ProcState::Busy,
            ProcState::Stopping,
        ];
        let mut settled = Vec::new();
        for n in 0..=4u32 {
            for code in 0..4usize.pow(n) {
                let procs: Vec<ProcView> = (0..n)
                    .map(|i| ProcView {
                        id: w(101 + i),
                        state: states[code / 4usize.pow(i) % 4],
                    })
                    .collect();
                for (min, max, waiting) in (0..=4).flat_map(|min| {
                    (min.max(1)..=4).flat_map(move |max| (0..=3).map(move |q| (min, max, q)))
                }) {
                    let view = job(min, max, &procs, Some(waiting));
                    if decide(&view, &ctx(now, 1, false)).is_empty() {
                        settled.push((min, max, procs.clone(), waiting));
                    }
                }
            }
        }
        settled
    }

    /// `procs` with member `i` moved to state `to`.
    fn moved(procs: &[ProcView], i: usize, to: ProcState) -> Vec<ProcView> {
        let mut after = procs.to_vec();
        after[i].state = to;
        after
    }

    #[test]
    fn a_decision_skipped_after_a_job_taken_or_answered_would_have_done_nothing() {
        let now = Instant::now();
        let settled = settled_jobs(now);
        assert!(settled.len() > 1_000, "{} settled jobs", settled.len());
        let mut took_and_acted = 0;
        for (min, max, procs, waiting) in &settled {
            for (i, p) in procs.iter().enumerate() {
                let (change, after, waiting_after) = match p.state {
                    ProcState::Busy => (
                        MemberChange::AnsweredJob,
                        moved(procs, i, at(now, 0)),
                        *waiting,
                    ),
                    // The job it took was one of those waiting.
                    ProcState::Idle { .. } if *waiting > 0 => (
                        MemberChange::TookJob,
                        moved(procs, i, ProcState::Busy),
                        waiting - 1,
                    ),
                    _ => continue,
                };
                let actions = decide(
                    &job(*min, *max, &after, Some(waiting_after)),
                    &ctx(now, 1, false),
                );
                if !may_change_decision(change, waiting_after) {
                    assert_eq!(
                        actions,
                        [],
                        "{change:?} on {procs:?}, min {min} max {max} waiting {waiting}"
                    );
                } else if !actions.is_empty() {
                    took_and_acted += 1;
                }
            }
        }
        // Taking a job while more wait can call for a process at once.
        assert!(took_and_acted > 0);
    }

    fn job(
        min: u32,
        max: u32,
        procs: &[ProcView],
        waiting: Option<u64>,
    ) -> JobView<impl Iterator<Item = ProcView> + Clone + '_> {
        JobView {
            min,
            max,
            procs: procs.iter().copied(),
            waiting,
            restart_blocked: false,
        }
    }

    fn start(count: u32, reason: StartReason) -> Action {
        Action::Start { count, reason }
    }

    #[test]
    fn starts_min_at_start() {
        let now = Instant::now();
        assert_eq!(
            decide(&job(2, 5, &[], Some(0)), &ctx(now, 0, true)),
            vec![start(2, StartReason::BelowMin)]
        );
        assert_eq!(
            decide(&job(2, 5, &[], None), &ctx(now, 0, false)),
            vec![start(2, StartReason::BelowMin)]
        );
    }

    #[test]
    fn backlog_starts_up_to_max_and_no_more() {
        let now = Instant::now();
        let c = ctx(now, 0, true);
        assert_eq!(
            decide(&job(0, 3, &[], Some(10)), &c),
            vec![start(3, StartReason::Backlog)]
        );
        assert_eq!(
            decide(&job(0, 3, &[], Some(2)), &c),
            vec![start(2, StartReason::Backlog)]
        );
        let busy = procs(&[ProcState::Busy; 3]);
        assert_eq!(decide(&job(0, 3, &busy, Some(10)), &c), vec![]);
    }

    #[test]
    fn processes_already_starting_cover_the_backlog() {
        let now = Instant::now();
        let p = procs(&[ProcState::Starting, ProcState::Starting, ProcState::Busy]);
        assert_eq!(decide(&job(0, 8, &p, Some(2)), &ctx(now, 0, false)), vec![]);
        assert_eq!(
            decide(&job(0, 8, &p, Some(5)), &ctx(now, 0, false)),
            vec![start(3, StartReason::Backlog)]
        );
    }

    #[test]
    fn an_idle_process_means_no_scale_up() {
        let now = Instant::now();
        let p = procs(&[ProcState::Busy, at(now, 0)]);
        assert_eq!(decide(&job(0, 8, &p, Some(5)), &ctx(now, 0, true)), vec![]);
    }

    #[test]
    fn below_min_and_backlog_together() {
        let now = Instant::now();
        // min 2 brings two; the backlog of 5 needs three more (two of the five
        // are covered by the processes starting for min).
        assert_eq!(
            decide(&job(2, 10, &[], Some(5)), &ctx(now, 0, true)),
            vec![
                start(2, StartReason::BelowMin),
                start(3, StartReason::Backlog)
            ]
        );
    }

    #[test]
    fn scale_down_needs_fresh_empty_queue_and_idle_time() {
        let now = Instant::now();
        let p = procs(&[at(now, 5), at(now, 1), ProcState::Busy]);
        // Stale counts: nothing.
        assert_eq!(decide(&job(0, 3, &p, Some(0)), &ctx(now, 2, false)), vec![]);
        // Jobs waiting: nothing stops.
        assert_eq!(decide(&job(0, 3, &p, Some(1)), &ctx(now, 2, true)), vec![]);
        // No server answered: unknown queue, nothing stops.
        assert_eq!(decide(&job(0, 3, &p, None), &ctx(now, 2, true)), vec![]);
        // Only the process idle >= 2 s, never the busy one.
        assert_eq!(
            decide(&job(0, 3, &p, Some(0)), &ctx(now, 2, true)),
            vec![Action::Stop {
                id: w(100),
                idle_for: Duration::from_secs(5)
            }]
        );
        // max_idle_time 0: every idle surplus process.
        assert_eq!(decide(&job(0, 3, &p, Some(0)), &ctx(now, 0, true)).len(), 2);
    }

    #[test]
    fn scale_down_keeps_min() {
        let now = Instant::now();
        let p = procs(&[at(now, 50), at(now, 40), at(now, 30)]);
        let a = decide(&job(2, 3, &p, Some(0)), &ctx(now, 2, true));
        assert_eq!(
            a,
            vec![Action::Stop {
                id: w(100),
                idle_for: Duration::from_secs(50)
            }]
        );
    }

    #[test]
    fn min_equals_max_is_steady() {
        let now = Instant::now();
        let p = procs(&[at(now, 100), ProcState::Busy]);
        assert_eq!(decide(&job(2, 2, &p, Some(0)), &ctx(now, 0, true)), vec![]);
        assert_eq!(decide(&job(2, 2, &p, Some(9)), &ctx(now, 0, true)), vec![]);
    }

    #[test]
    fn max_zero_disables_the_job() {
        let now = Instant::now();
        assert_eq!(decide(&job(0, 0, &[], Some(9)), &ctx(now, 0, true)), vec![]);
    }

    #[test]
    fn lowering_max_stops_idle_now_and_busy_after_job() {
        let now = Instant::now();
        let p = procs(&[
            ProcState::Busy,
            at(now, 1),
            ProcState::Busy,
            ProcState::Starting,
        ]);
        let a = decide(&job(0, 1, &p, Some(0)), &ctx(now, 60, false));
        assert_eq!(
            a,
            vec![
                Action::Stop {
                    id: w(103),
                    idle_for: Duration::ZERO
                },
                Action::Stop {
                    id: w(101),
                    idle_for: Duration::from_secs(1)
                },
                Action::StopAfterJob { id: w(100) },
            ]
        );
    }

    #[test]
    fn stopping_processes_do_not_count() {
        let now = Instant::now();
        let p = procs(&[ProcState::Stopping, ProcState::Stopping]);
        assert_eq!(
            decide(&job(1, 2, &p, Some(0)), &ctx(now, 0, true)),
            vec![start(1, StartReason::BelowMin)]
        );
    }

    #[test]
    fn crash_backoff_blocks_starts_but_not_stops() {
        let now = Instant::now();
        let mut j = job(2, 4, &[], Some(5));
        j.restart_blocked = true;
        assert_eq!(decide(&j, &ctx(now, 0, true)), vec![]);
        let p = procs(&[at(now, 9), at(now, 9), at(now, 9)]);
        let mut j = job(1, 4, &p, Some(0));
        j.restart_blocked = true;
        assert_eq!(decide(&j, &ctx(now, 0, true)).len(), 2);
    }
}
