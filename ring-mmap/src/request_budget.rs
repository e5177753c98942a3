//! How much serving one connection may ask for: a token bucket of requests per connection.
//!
//! Each connection is served by a thread of its own, which under a hypervisor stand-in runs at
//! real-time priority ([`crate::ServerOptions::realtime`]): a client asking for STATS as fast as
//! it can would otherwise take a whole CPU from the threads it traces. So each request costs a
//! token from the connection's bucket, which refills at a steady rate up to its size; once the
//! bucket is empty the connection's thread sleeps, its requests waiting in the socket, until a
//! sixteenth of the bucket has refilled, and then serves them in order.
//!
//! Reading pages is what the server is for, and must never be held back: a GET_READER_PAGE
//! that swaps in a new reader page costs nothing and adds [`RequestBudget::per_swap`] tokens,
//! enough for the requests that go with reading one page (reading the page the writer was on,
//! a WAIT). Swaps come at most as fast as the writer fills pages, so a consumer that keeps up
//! never runs out, while a client whose requests bring nothing new is bounded by the steady rate.

use std::time::{Duration, Instant};

/// A connection's request budget ([`crate::ServerOptions::budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBudget {
    /// Requests a connection may make in a burst: the bucket's size (at least 1).
    pub burst: u32,
    /// One request is added back this often (0: the budget is unlimited).
    pub refill_every: Duration,
    /// Requests added back by each GET_READER_PAGE answer that swapped in a new reader page
    /// (which itself costs none).
    pub per_swap: u32,
}

impl RequestBudget {
    /// No limit.
    pub const UNLIMITED: Self = Self { burst: u32::MAX, refill_every: Duration::ZERO, per_swap: 0 };
}

/// The default budget: 4096 requests at once, 5000 a second after that, 3 more per swap. A
/// consumer reading its pages asks for a few requests per page and earns them back with the
/// page's swap; a client that only polls (STATS, a WAIT on a page that does not fill) can make
/// 5000 requests a second, a few percent of a CPU.
pub const DEFAULT_BUDGET: RequestBudget =
    RequestBudget { burst: 4096, refill_every: Duration::from_micros(200), per_swap: 3 };

/// One connection's bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    budget: RequestBudget,
    tokens: u32,
    /// When the last token was added (or the bucket last found full).
    refilled_at: Instant,
    /// Spent: requests wait until the bucket holds [`Bucket::resume_level`] again.
    resting: bool,
}

impl Bucket {
    /// A full bucket of `budget`, at `now`.
    pub(crate) fn new(budget: RequestBudget, now: Instant) -> Self {
        let budget = RequestBudget { burst: budget.burst.max(1), ..budget };
        Self { budget, tokens: budget.burst, refilled_at: now, resting: false }
    }

    /// Tokens held once resting ends: a sixteenth of the bucket, so that a spent connection's
    /// thread wakes once per batch of requests, not once per request.
    fn resume_level(&self) -> u32 {
        (self.budget.burst / 16).max(1)
    }

    /// Adds the tokens due since the last refill.
    fn refill(&mut self, now: Instant) {
        let every = self.budget.refill_every.as_nanos();
        let due = now.saturating_duration_since(self.refilled_at).as_nanos().checked_div(every);
        match due {
            Some(due) if u128::from(self.tokens) + due < u128::from(self.budget.burst) => {
                // `due * every` is at most the time elapsed, which a Duration holds.
                self.tokens += due as u32;
                self.refilled_at += Duration::from_nanos((due * every) as u64);
            }
            // Full again (or no limit).
            _ => (self.tokens, self.refilled_at) = (self.budget.burst, now),
        }
    }

    /// How long the connection's next request must wait at `now`: `None` to serve it now.
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        let resume = self.resume_level();
        if self.resting && self.tokens >= resume {
            self.resting = false;
        }
        if !self.resting {
            return None;
        }
        let ready_at = self.refilled_at + self.budget.refill_every.saturating_mul(resume - self.tokens);
        Some(ready_at.saturating_duration_since(now))
    }

    /// A request was served: it cost a token, unless it swapped in a new reader page, which
    /// adds [`RequestBudget::per_swap`] instead.
    pub(crate) fn served(&mut self, swapped: bool) {
        self.tokens = match swapped {
            true => self.tokens.saturating_add(self.budget.per_swap).min(self.budget.burst),
            false => self.tokens.saturating_sub(1),
        };
        if self.tokens == 0 {
            self.resting = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_spent_bucket_waits_for_a_sixteenth_of_it_then_serves_again() {
        let start = Instant::now();
        let mut b = Bucket::new(RequestBudget { burst: 32, refill_every: MS, per_swap: 3 }, start);
        for _ in 0..32 {
            assert_eq!(b.wait(start), None);
            b.served(false);
        }
        assert_eq!(b.wait(start), Some(2 * MS), "two tokens, a sixteenth of 32, take 2 ms");
        assert_eq!(b.wait(start + MS), Some(MS));
        assert_eq!(b.wait(start + 2 * MS), None);
        b.served(false);
        b.served(false);
        assert_eq!(b.wait(start + 2 * MS), Some(2 * MS), "spent again");
        assert_eq!(b.wait(start + 100 * MS), None);
        assert_eq!(b.tokens, 32, "refilled up to its size, no more");
    }

    #[test]
    fn swaps_cost_nothing_and_add_tokens() {
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut b = Bucket::new(RequestBudget { burst: 4, refill_every: hour, per_swap: 3 }, start);
        // A consumer's round: a swap, then two requests that bring nothing new.
        for _ in 0..1000 {
            b.served(true);
            b.served(false);
            b.served(false);
            assert_eq!(b.wait(start), None, "a consumer that reads its pages never waits");
        }
        for _ in 0..4 {
            b.served(false);
        }
        assert!(b.wait(start).is_some_and(|w| w > Duration::from_secs(60)), "polling alone spends the bucket");
    }

    #[test]
    fn an_unlimited_budget_never_waits() {
        let now = Instant::now();
        let mut b = Bucket::new(RequestBudget::UNLIMITED, now);
        for _ in 0..100_000 {
            b.served(false);
        }
        assert_eq!(b.wait(now), None);
    }
}
