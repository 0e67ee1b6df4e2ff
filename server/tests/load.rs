//! The load generator (`examples/load.rs`) with tiny bounds: every request is accepted, every
//! message delivered, and the figures are sane, on SQLite over HTTP/1.1 and on PostgreSQL over
//! HTTP/2; unbounded runs are refused. So that the tool cannot rot while nobody runs it.

mod support;

#[path = "support/load/mod.rs"]
mod load;

use std::time::Duration;

use load::{Figures, Report, Scenario, Spec, Storage};
use support::TEST_DEADLINE;

fn assert_sane(report: &Report, spec: &Spec) {
    for (name, figures) in [("server", &report.server), ("direct", &report.direct)] {
        let text = report.text(spec);
        let Figures {
            sent,
            accepted,
            refusals,
            latencies,
            ..
        } = figures;
        assert_eq!(*sent, spec.requests, "{name}: {text}");
        assert_eq!(*accepted, spec.requests, "{name}: {refusals:?}");
        assert_eq!(latencies.len(), spec.requests, "{name}");
        assert!(latencies.windows(2).all(|w| w[0] <= w[1]), "{name}: sorted");
        let (p50, p99) = (figures.percentile(50), figures.percentile(99));
        assert!(Duration::ZERO < p50 && p50 <= p99, "{name}: {text}");
        assert!(p99 <= figures.elapsed, "{name}: {text}");
        assert!(figures.per_second() > 0.0, "{name}: {text}");
        let delivered = figures.delivered_after.expect("everything delivered");
        assert!(
            delivered >= *latencies.first().expect("a latency"),
            "{name}"
        );
        assert_eq!(figures.rejected_deliveries, 0, "{name}");
        assert_eq!(
            figures.probe.0, figures.probe.1,
            "{name}: the probe's queue: {text}"
        );
    }
    assert!(report.ratio_p50() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_on_sqlite_is_accepted_and_delivered() {
    let root = tempfile::tempdir().expect("tmp");
    let spec = Spec {
        scenario: Scenario::SmallGroups {
            groups: 2,
            members: 3,
        },
        storage: Storage::Sqlite {
            dir: root.path().to_path_buf(),
        },
        requests: 20,
        max_duration: Duration::from_secs(60),
        concurrency: 3,
        http2: false,
        eager_drain: false,
    };
    let report = tokio::time::timeout(TEST_DEADLINE, load::run(&spec))
        .await
        .expect("within the deadline")
        .expect("the run");
    assert_sane(&report, &spec);
    // 20 messages over 2 groups: the first group's probe member got its Welcome and 10.
    assert_eq!(report.server.probe, (11, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_on_postgresql_over_http2_is_accepted_and_delivered() {
    let spec = Spec {
        scenario: Scenario::OneGroup { members: 4 },
        storage: Storage::Postgres {
            server_url: support::postgres::fresh_database().await,
            direct_url: support::postgres::fresh_database().await,
        },
        requests: 12,
        max_duration: Duration::from_secs(60),
        concurrency: 2,
        http2: true,
        eager_drain: true,
    };
    let report = tokio::time::timeout(TEST_DEADLINE, load::run(&spec))
        .await
        .expect("within the deadline")
        .expect("the run");
    assert_sane(&report, &spec);
    assert_eq!(report.direct.probe, (13, 13));
}

#[test]
fn unbounded_runs_are_refused() {
    let spec = Spec {
        scenario: Scenario::SmallGroups {
            groups: 2,
            members: 3,
        },
        storage: Storage::Sqlite {
            dir: std::env::temp_dir(),
        },
        requests: 10,
        max_duration: Duration::from_secs(10),
        concurrency: 2,
        http2: false,
        eager_drain: false,
    };
    assert_eq!(spec.check(), Ok(()));
    for broken in [
        Spec {
            requests: 0,
            ..spec.clone()
        },
        Spec {
            requests: load::MAX_REQUESTS + 1,
            ..spec.clone()
        },
        Spec {
            max_duration: Duration::ZERO,
            ..spec.clone()
        },
        Spec {
            max_duration: load::MAX_DURATION + Duration::from_secs(1),
            ..spec.clone()
        },
        Spec {
            concurrency: 0,
            ..spec.clone()
        },
        Spec {
            scenario: Scenario::OneGroup { members: 1 },
            ..spec.clone()
        },
    ] {
        assert!(broken.check().is_err(), "{broken:?}");
    }
}
