//! The built-in policies: the two runbooks as rows (`runbooks-2`, the default) and
//! the first policy as it decided before (`runbooks-1`), kept for `replay --compare`.

use std::collections::BTreeMap;

use super::{DEFAULT_POLICY_VERSION, LoopGuard, Outcome, Policy, RUNBOOKS_1, Rule, Verification};
use crate::domain::{Scope, SignalKind};

impl Rule {
    /// R1: the engine's `release_regressed` signal for a region of a release that
    /// regressed in enough regions (`domain::release`) is a rollback, after the
    /// region's deploy of the release (the signal starts with it). Every policy has it
    /// unless it has its own rule for that kind.
    pub fn release() -> Self {
        Self {
            after_deploy: true,
            ..Self::new(
                crate::domain::release::RELEASE_RULE,
                "Multi-Region Rollback: the release regressed in enough regions that every \
                 region on it rolls back, in parallel.",
                &[SignalKind::ReleaseRegressed],
                Outcome::Rollback,
            )
            .present()
        }
    }

    fn new(id: &str, description: &str, kinds: &[SignalKind], outcome: Outcome) -> Self {
        Self {
            id: id.into(),
            description: description.into(),
            kinds: kinds.to_vec(),
            scope: Scope::Any,
            above: None,
            baseline_factor: None,
            baseline_plus: None,
            present: None,
            floor: BTreeMap::new(),
            min_duration_secs: 0,
            min_observations: 1,
            after_deploy: false,
            immediately_after_deploy: false,
            outcome,
        }
    }

    fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    fn above(mut self, x: f64) -> Self {
        self.above = Some(x);
        self
    }

    fn factor(mut self, x: f64) -> Self {
        self.baseline_factor = Some(x);
        self
    }

    fn plus(mut self, x: f64) -> Self {
        self.baseline_plus = Some(x);
        self
    }

    fn present(mut self) -> Self {
        self.present = Some(true);
        self
    }

    fn lasting(mut self, secs: u64) -> Self {
        self.min_duration_secs = secs;
        self
    }

    fn floor(mut self, kind: SignalKind, x: f64) -> Self {
        self.floor.insert(kind, x);
        self
    }

    fn immediately_after_deploy(mut self) -> Self {
        self.immediately_after_deploy = true;
        self
    }
}

impl Default for Policy {
    /// The two runbooks, rule for rule (see RUNBOOK-FACTS.md).
    fn default() -> Self {
        use Outcome::{Freeze, Investigate, Monitor, Rollback};
        use SignalKind as K;
        let rules = vec![
            Rule::new(
                "C1",
                "Canary auto-rollback: error rate exceeds baseline + 0.5%",
                &[K::ErrorRate],
                Rollback,
            )
            .scope(Scope::Canary)
            .plus(0.005),
            Rule::new(
                "C2",
                "Canary auto-rollback: latency P95 exceeds baseline × 1.5",
                &[K::LatencyP95],
                Rollback,
            )
            .scope(Scope::Canary)
            .factor(1.5),
            Rule::new(
                "C3",
                "Canary auto-rollback: CPU usage exceeds 90%",
                &[K::Cpu],
                Rollback,
            )
            .scope(Scope::Canary)
            .above(0.9),
            Rule::new(
                "C4",
                "Canary auto-rollback: memory usage exceeds 90%",
                &[K::Memory],
                Rollback,
            )
            .scope(Scope::Canary)
            .above(0.9),
            Rule::new(
                "M1",
                "Error Rate > 1%: Monitor closely",
                &[K::ErrorRate],
                Monitor,
            )
            .above(0.01),
            Rule::new(
                "M2",
                "Error Rate > 5%: Initiate rollback",
                &[K::ErrorRate],
                Rollback,
            )
            .above(0.05),
            Rule::new(
                "M3",
                "Latency P95 > 2x baseline: Monitor closely",
                &[K::LatencyP95],
                Monitor,
            )
            .factor(2.0),
            Rule::new(
                "M4",
                "Latency P95 > 3x baseline: Initiate rollback",
                &[K::LatencyP95],
                Rollback,
            )
            .factor(3.0),
            Rule::new(
                "M5",
                "Customer Reports > 5 in 5 min: Investigate immediately",
                &[K::CustomerReports],
                Investigate,
            )
            .above(5.0),
            Rule::new(
                "M6",
                "Customer Reports > 20 in 5 min: Initiate rollback",
                &[K::CustomerReports],
                Rollback,
            )
            .above(20.0),
            Rule::new(
                "M7",
                "SLA Violation, any: Initiate rollback",
                &[K::SlaViolation],
                Rollback,
            )
            .present(),
            Rule::new(
                "M8",
                "Data Corruption, any: Stop all deployments, escalate",
                &[K::DataCorruption],
                Freeze,
            )
            .present(),
            Rule {
                after_deploy: true,
                ..Rule::new(
                    "G1",
                    "Health checks fail for >3 minutes after a deploy or config change.",
                    &[K::HealthCheck],
                    Rollback,
                )
                .present()
                .lasting(180)
            },
            Rule::new(
                "G2",
                "Error rate exceeds the SLO breach threshold for >5 minutes with no clear \
                 mitigation. (Set `above` to your SLO's breach threshold.)",
                &[K::ErrorRate],
                Rollback,
            )
            .above(0.01)
            .lasting(300),
            Rule::new(
                "G3",
                "Canary or stable pods are crash-looping, failing readiness probes, or \
                 violating SLO burn alerts.",
                &[K::CrashLoop, K::Readiness, K::SloBurn],
                Rollback,
            )
            .present(),
            Rule::new(
                "G4",
                "External dependencies are healthy, but errors/latency regress relative to \
                 the last known good version.",
                &[K::ErrorRate, K::LatencyP95],
                Rollback,
            )
            .scope(Scope::Stable)
            // 3×, like M4: a lower factor would roll back where the matrix (M3) says
            // "monitor closely".
            .factor(3.0)
            // A multiple of a tiny baseline is no regression: an error rate must also
            // be past M1's 1 %, and even there G4 needs the two conditions below, so that
            // it never turns M1's "monitor closely" into a rollback by itself.
            .floor(K::ErrorRate, 0.01)
            // G1's "for >3 minutes": a flapping alert is not a regression.
            .lasting(180)
            // "relative to the last known good version": one that a deploy has just
            // replaced.
            .immediately_after_deploy(),
        ];
        Self {
            version: DEFAULT_POLICY_VERSION.into(),
            correlation_window_secs: 7200,
            blame_window_secs: 900,
            outage_grace_secs: 600,
            environments: BTreeMap::new(),
            loop_guard: LoopGuard::default(),
            verification: Verification::default(),
            releases: crate::domain::release::BlastRadius::default(),
            rules,
        }
    }
}

impl Policy {
    /// The built-in policy of this name: `runbooks-2` (the default) or `runbooks-1`.
    pub fn builtin(name: &str) -> Option<Policy> {
        match name {
            DEFAULT_POLICY_VERSION => Some(Policy::default()),
            RUNBOOKS_1 => Some(Policy::runbooks_1()),
            _ => None,
        }
    }

    /// The names [`Policy::builtin`] knows.
    pub const BUILTIN: [&'static str; 2] = [RUNBOOKS_1, DEFAULT_POLICY_VERSION];

    /// The first built-in policy, as it decided before `runbooks-2`: G4 fires on any
    /// stable error rate or latency over 3× its baseline, any deploy in the correlation
    /// window is blamed, and a recovered dependency holds nothing.
    pub fn runbooks_1() -> Policy {
        let mut policy = Policy {
            version: RUNBOOKS_1.into(),
            outage_grace_secs: 0,
            ..Policy::default()
        };
        policy.blame_window_secs = policy.correlation_window_secs;
        if let Some(g4) = policy.rules.iter_mut().find(|r| r.id == "G4") {
            g4.floor.clear();
            g4.min_duration_secs = 0;
            g4.immediately_after_deploy = false;
        }
        policy
    }
}
