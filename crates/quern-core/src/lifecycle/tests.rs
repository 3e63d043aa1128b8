//! Every outcome x policy, as a table.

use std::time::Duration;

use super::*;

const NOW: u64 = 1_000_000;

fn policies() -> [(&'static str, Policy); 3] {
    let fixed = Backoff::Fixed(Duration::from_secs(5));
    [
        (
            "one attempt",
            Policy {
                max_attempts: 1,
                backoff: fixed,
            },
        ),
        (
            "three attempts",
            Policy {
                max_attempts: 3,
                backoff: fixed,
            },
        ),
        (
            "exponential",
            Policy {
                max_attempts: 10,
                backoff: Backoff::Exponential {
                    base: Duration::from_secs(1),
                    factor: 2.0,
                    max: Duration::from_secs(60),
                    jitter: 0.5,
                },
            },
        ),
    ]
}

/// A named way to make an outcome (outcomes hold errors, which are not `Clone`).
type NamedOutcome = (&'static str, fn() -> AttemptOutcome);

fn outcomes() -> Vec<NamedOutcome> {
    vec![
        ("succeeded", || AttemptOutcome::Succeeded),
        ("run error, retryable", || AttemptOutcome::Failed {
            stage: Stage::Run,
            error: JobError::msg("smtp down"),
        }),
        ("run error, permanent", || AttemptOutcome::Failed {
            stage: Stage::Run,
            error: JobError::permanent("bad address"),
        }),
        ("resource error, retryable", || AttemptOutcome::Failed {
            stage: Stage::Acquire,
            error: JobError::msg("db unreachable"),
        }),
        ("resource error, permanent", || AttemptOutcome::Failed {
            stage: Stage::Acquire,
            error: JobError::permanent("no such database"),
        }),
        ("isolation error", || AttemptOutcome::Failed {
            stage: Stage::Isolation,
            error: JobError::msg("cannot spawn thread"),
        }),
        ("panicked", || AttemptOutcome::Panicked {
            message: "oops (at src/jobs.rs:1:1)".into(),
            backtrace: None,
        }),
        ("timed out", || AttemptOutcome::TimedOut {
            after: Duration::from_millis(1500),
        }),
        ("snoozed", || AttemptOutcome::Snoozed {
            delay: Duration::from_secs(7),
        }),
        ("cancelled", || AttemptOutcome::Cancelled),
        ("interrupted", || AttemptOutcome::Interrupted),
        ("undecodable", || {
            AttemptOutcome::Undecodable(crate::envelope::decode_payload::<u32>("\"x\"").unwrap_err())
        }),
        ("unknown job", || AttemptOutcome::UnknownJob {
            known: vec!["a".into()],
        }),
        ("lost", || AttemptOutcome::Lost { expiries: 2 }),
    ]
}

/// The fate the table expects, written independently of `decide`.
fn expected(outcome: &str, policy: &Policy, attempt: u32) -> Fate {
    let retry_or_dead = || {
        if attempt >= policy.max_attempts {
            Fate::Dead {
                reason: DeadReason::MaxAttempts,
            }
        } else {
            Fate::Retry {
                at_ms: NOW + policy.backoff.delay_with(attempt, 0.5).as_millis() as u64,
            }
        }
    };
    match outcome {
        "succeeded" => Fate::Complete,
        "run error, permanent" | "resource error, permanent" => Fate::Dead {
            reason: DeadReason::Permanent,
        },
        "run error, retryable"
        | "resource error, retryable"
        | "isolation error"
        | "panicked"
        | "timed out" => retry_or_dead(),
        "snoozed" => Fate::Snooze {
            until_ms: NOW + 7_000,
        },
        "cancelled" => Fate::Cancelled,
        "interrupted" => Fate::GiveBack,
        "undecodable" => Fate::Dead {
            reason: DeadReason::Undecodable,
        },
        "unknown job" => Fate::Dead {
            reason: DeadReason::UnknownJob,
        },
        "lost" => Fate::Dead {
            reason: DeadReason::MaxAttempts,
        },
        other => panic!("no expectation for {other}"),
    }
}

fn expected_kind(outcome: &str) -> Option<&'static str> {
    Some(match outcome {
        "run error, retryable" | "run error, permanent" => "error",
        "resource error, retryable" | "resource error, permanent" => "resource",
        "isolation error" => "isolation",
        "panicked" => "panic",
        "timed out" => "timeout",
        "undecodable" => "decode",
        "unknown job" => "unknown_job",
        "lost" => "lost",
        _ => return None,
    })
}

#[test]
fn every_outcome_under_every_policy_at_every_attempt() {
    let mut cases = 0;
    for (policy_name, policy) in policies() {
        for attempt in [1, 2, 3, 10] {
            for (name, make) in outcomes() {
                let decision = decide(
                    &make(),
                    Attempt {
                        number: attempt,
                        now_ms: NOW,
                        jitter: 0.5,
                    },
                    &policy,
                );
                let want = expected(name, &policy, attempt);
                assert_eq!(decision.fate, want, "{name} / {policy_name} / attempt {attempt}");
                let kind = decision.failure.as_ref().map(|f| f.kind.as_str());
                assert_eq!(kind, expected_kind(name), "{name}: recorded failure kind");
                if let Some(f) = &decision.failure {
                    let lost = name == "lost";
                    assert_eq!(
                        f.attempt,
                        if lost { attempt - 1 } else { attempt },
                        "{name}: failure attempt"
                    );
                    assert_eq!(f.at, NOW);
                    assert!(!f.chain.is_empty(), "{name}: the chain says what failed");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 3 * 4 * 14);
}

#[test]
fn the_chain_says_which_stage_failed_and_keeps_every_cause() {
    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;
    let err = JobError::retryable(Refused).context("connecting to db:5432");
    let policy = policies()[1].1;
    let d = decide(
        &AttemptOutcome::Failed {
            stage: Stage::Acquire,
            error: err,
        },
        Attempt {
            number: 1,
            now_ms: NOW,
            jitter: 0.0,
        },
        &policy,
    );
    let chain = d.failure.expect("a failure").chain;
    assert_eq!(
        chain,
        [
            "acquiring the job's resources",
            "connecting to db:5432",
            "connection refused"
        ]
    );
}

#[test]
fn backoff_grows_and_jitter_comes_from_the_attempt() {
    let policy = policies()[2].1;
    let failed = || AttemptOutcome::TimedOut {
        after: Duration::from_secs(1),
    };
    let at = |n, jitter| match decide(
        &failed(),
        Attempt {
            number: n,
            now_ms: NOW,
            jitter,
        },
        &policy,
    )
    .fate
    {
        Fate::Retry { at_ms } => at_ms - NOW,
        other => panic!("expected a retry, got {other:?}"),
    };
    assert_eq!(at(1, 0.0), 1_000);
    assert_eq!(at(2, 0.0), 2_000);
    assert_eq!(at(3, 0.0), 4_000);
    assert_eq!(at(3, 0.5), 5_000);
    assert_eq!(at(9, 0.0), 60_000, "capped at max");
}

#[test]
fn lost_deliveries_run_until_their_attempts_are_spent() {
    assert!(!lost_too_often(3, 3, 2));
    assert!(lost_too_often(4, 3, 1));
    assert!(
        !lost_too_often(4, 3, 0),
        "a retry beyond max with no lost lease is not a loss"
    );
}

#[test]
fn settle_errors_by_kind_and_retryability() {
    use AfterSettleError::*;
    let table = [
        (SettleKind::Complete, true, TryAgain),
        (SettleKind::Retry, true, TryAgain),
        (SettleKind::Snooze, true, TryAgain),
        (SettleKind::Dead, true, TryAgain),
        (SettleKind::Complete, false, Surface),
        (SettleKind::Retry, false, DeadLetter),
        (SettleKind::Snooze, false, DeadLetter),
        (SettleKind::Dead, false, Surface),
    ];
    for (kind, retryable, want) in table {
        assert_eq!(
            after_settle_error(kind, retryable),
            want,
            "{kind:?} retryable={retryable}"
        );
    }
}
