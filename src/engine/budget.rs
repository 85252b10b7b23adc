//! How much of its time the run loop may spend deciding.

use std::time::{Duration, Instant};

/// Time the run loop may spend in batches before its share applies: an
/// incident's first second of decisions never waits. Past it, a batch over many
/// targets rests between its runs of evaluations too (the engine's `Pace`).
pub const BURST: Duration = Duration::from_secs(1);

/// A leaky bucket of busy time. It holds up to [`BURST`] and fills at `share` of the
/// time that passes; each batch spends what it took, and when the bucket is empty the
/// loop rests until it is not. A tick spends its evaluations, not its reload of the
/// window (which grows with the fleet, not with a flood). Under a flood of alerts each
/// batch re-weighs
/// every target the flood touches, and run back to back they took the CPU that ingest
/// needed (engine on: 0.62 of engine off at 50 services); a loop that rests after a
/// long batch takes the reports of that time in one batch, so its work grows with the
/// new alerts, not with the rate of batches. Outside a flood batches take milliseconds
/// and it never rests.
#[derive(Debug, Clone)]
pub struct Budget {
    share: f64,
    /// Busy time left, in seconds; negative when overspent.
    credit: f64,
    at: Instant,
}

impl Budget {
    /// A full bucket at `now`, filling at `share` (in (0, 1]; 1: never rests).
    pub fn new(share: f64, now: Instant) -> Self {
        Self {
            share: share.clamp(f64::MIN_POSITIVE, 1.0),
            credit: BURST.as_secs_f64(),
            at: now,
        }
    }

    fn fill(&mut self, now: Instant) {
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        self.credit = (self.credit + passed * self.share).min(BURST.as_secs_f64());
        self.at = self.at.max(now);
    }

    /// How long to rest at `now` before the next batch.
    pub fn rest(&mut self, now: Instant) -> Duration {
        self.fill(now);
        if self.credit >= 0.0 || self.share >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.credit / self.share)
    }

    /// Spends `busy`, a batch that ended at `now`.
    pub fn spend(&mut self, busy: Duration, now: Instant) {
        self.fill(now);
        self.credit -= busy.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn short_batches_never_rest_and_a_burst_passes_whole() {
        let t0 = Instant::now();
        let mut budget = Budget::new(0.2, t0);
        // 200 batches of 5 ms, 20 ms apart: 25 % busy, within the burst for 1 s.
        let mut now = t0;
        for _ in 0..40 {
            assert_eq!(budget.rest(now), Duration::ZERO);
            budget.spend(5 * MS, now + 5 * MS);
            now += 20 * MS;
        }
        // An incident's first second of work passes without a rest.
        let mut budget = Budget::new(0.2, t0);
        budget.spend(BURST, t0 + BURST);
        assert_eq!(budget.rest(t0 + BURST), Duration::ZERO);
    }

    #[test]
    fn past_the_burst_it_rests_until_busy_time_is_its_share() {
        let t0 = Instant::now();
        let mut budget = Budget::new(0.2, t0);
        let mut now = t0;
        let mut busy = Duration::ZERO;
        for _ in 0..100 {
            now += budget.rest(now);
            let took = 500 * MS;
            now += took;
            busy += took;
            budget.spend(took, now);
        }
        let share = busy.as_secs_f64() / (now - t0).as_secs_f64();
        // The burst on top of a fifth: 50 s busy in 245 s.
        assert!((0.2..0.21).contains(&share), "{share}");
        // After a batch of 500 ms with the bucket empty it rests 2 s: 0.5 s in 2.5 s.
        let rest = budget.rest(now);
        assert!((1999 * MS..2001 * MS).contains(&rest), "{rest:?}");
    }

    #[test]
    fn a_share_of_one_never_rests() {
        let t0 = Instant::now();
        let mut budget = Budget::new(1.0, t0);
        budget.spend(Duration::from_secs(60), t0 + Duration::from_secs(60));
        assert_eq!(budget.rest(t0 + Duration::from_secs(60)), Duration::ZERO);
    }
}
