//! A seconds-long run of the benchmark harness (`make bench` runs the real one): every
//! configuration is measured and gives sane, non-zero results. No number is asserted beyond
//! that: timings depend on the machine.

use std::time::Duration;

use canary_e2e::bench::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configuration_is_measured() {
    let options = Options {
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        rounds: 1,
        connections: 4,
        propagation_trials: 2,
        configure_trials: 1,
        pin: false,
        modules: Vec::new(),
        counted_requests: 0,
        callgrind_dir: None,
    };
    let report = bench::run(options).await.expect("benchmark run");

    assert_eq!(
        report.scenarios.len(),
        15,
        "configurations (0), (0a), (0b), (1) to (7), (8), (8a), (8b), (9) and (9a)"
    );
    for s in &report.scenarios {
        let [run] = s.runs.as_slice() else {
            panic!("{}: {} runs, expected 1", s.name, s.runs.len());
        };
        assert!(run.requests > 0, "{}: no requests completed", s.name);
        assert!(run.errors < run.requests, "{}: {run:?}", s.name);
        assert!(run.requests_per_second() > 0.0, "{}: {run:?}", s.name);
        assert!(
            run.cpu_us_per_request() > 0.0,
            "{}: no Envoy CPU time",
            s.name
        );
        assert!(
            run.p50_us > 0.0 && run.p99_us >= run.p50_us,
            "{}: {run:?}",
            s.name
        );
        assert!(s.rss_kib > 0, "{}: no resident memory read", s.name);
    }
    let c = &report.configure;
    assert_eq!((c.small_apply.len(), c.large_apply.len()), (1, 1));
    assert!(!c.large_on_configure.is_empty(), "on_configure time logged");
    assert_eq!(report.propagation.len(), 2);
    assert!(report.propagation.iter().all(|d| !d.is_zero()));

    assert_eq!(
        report.floor_parts().len(),
        5,
        "every row the floor's parts are taken from was measured"
    );
    let text = report.markdown("cargo test --test bench_smoke", &[]);
    for row in [
        "(1) Envoy, no filter",
        "(0) a proxy-wasm filter that does nothing",
        bench::FLOOR_READ,
        bench::FLOOR_READ_SET,
        bench::FLOOR_HEADING,
        "| setting one request header (1 host call) | (0b) − (0a) |",
        "| the filter's own work: reading the headers, deciding, counting | (3) − (0b) |",
        "CPU/request (3) vs (0)",
        "(5) filter",
        "(6) dynamic module, 2 variants",
        "(7) dynamic module, 1,000 routes",
        bench::DYNMOD_FLOOR,
        bench::DYNMOD_FLOOR_READ,
        bench::DYNMOD_FLOOR_READ_SET,
        "CPU/request (6) vs (1)",
        "CPU/request (6) vs (2)",
        "CPU/request (7) vs (1)",
        "`make dynmod` (native dynamic module",
        "Propagation",
        "| .wasm size |",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
}
