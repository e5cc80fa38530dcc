//! The `fjord` command line against a real broker: a short smoke of `fjord bench` (every
//! mode, JSON output and the SVG report), a timed run's report overlaid by `fjord bench plot`,
//! and the CLI's errors and exit codes.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{run_with_timeout, TempDir, TestBroker};

fn fjord(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_with_timeout(120, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, None)
}

/// The number after `"key":` in a one-line JSON object.
fn json_number(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}']).expect("a JSON number ends");
    rest[..end].parse().unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn bench_smoke_produce_consume_e2e_and_baseline() {
    let broker = TestBroker::start("bench-smoke");
    let bootstrap = broker.bootstrap();
    let report = TempDir::new("bench-report");
    let produced = fjord(&[
        "bench",
        "produce",
        "-b",
        &bootstrap,
        "--topic",
        "bench-smoke",
        "--partitions",
        "4",
        "--records",
        "20000",
        "--record-bytes",
        "100",
        "--json",
    ]);
    assert!(
        produced.status.success(),
        "bench produce: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let json = String::from_utf8_lossy(&produced.stdout).trim().to_string();
    assert_eq!(json_number(&json, "records"), 20000.0, "{json}");
    assert!(
        json_number(&json, "records_per_sec") > 0.0 && json_number(&json, "bytes_per_sec") > 0.0,
        "{json}"
    );
    for key in ["p50", "p99", "p999", "max"] {
        assert!(json_number(&json, key) >= 1.0, "latency {key} in {json}");
    }
    let consumed = fjord(&[
        "bench",
        "consume",
        "-b",
        &bootstrap,
        "--topic",
        "bench-smoke",
        "--partitions",
        "4",
        "--records",
        "20000",
        "--json",
    ]);
    assert!(
        consumed.status.success(),
        "bench consume: {}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let json = String::from_utf8_lossy(&consumed.stdout).trim().to_string();
    assert_eq!(
        json_number(&json, "records"),
        20000.0,
        "consume reads back exactly what was produced: {json}"
    );
    // As an idempotent producer: the broker checks every batch's sequence numbers (a wrong
    // one fails the run), and exactly the records sent are stored.
    let idempotent = fjord(&[
        "bench",
        "produce",
        "-b",
        &bootstrap,
        "--topic",
        "bench-idempotent",
        "--partitions",
        "3",
        "--records",
        "12000",
        "--batch-records",
        "50",
        "--connections",
        "2",
        "--idempotent",
        "--json",
    ]);
    assert!(
        idempotent.status.success(),
        "bench produce --idempotent: {}",
        String::from_utf8_lossy(&idempotent.stderr)
    );
    let json = String::from_utf8_lossy(&idempotent.stdout).trim().to_string();
    assert!(json.contains("\"idempotent\":true") && json_number(&json, "errors") == 0.0, "{json}");
    let consumed = fjord(&[
        "bench",
        "consume",
        "-b",
        &bootstrap,
        "--topic",
        "bench-idempotent",
        "--partitions",
        "3",
        "--records",
        "12000",
        "--json",
    ]);
    assert!(
        consumed.status.success(),
        "bench consume: {}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(json_number(String::from_utf8_lossy(&consumed.stdout).trim(), "records"), 12000.0);
    let report_dir = report.path().join("e2e").display().to_string();
    let e2e = fjord(&[
        "bench",
        "e2e",
        "-b",
        &bootstrap,
        "--topic",
        "bench-e2e",
        "--partitions",
        "2",
        "--records",
        "5000",
        "--rate",
        "20000",
        "--json",
        "--report",
        &report_dir,
    ]);
    assert!(e2e.status.success(), "bench e2e: {}", String::from_utf8_lossy(&e2e.stderr));
    let json = String::from_utf8_lossy(&e2e.stdout).trim().to_string();
    assert_eq!(json_number(&json, "records"), 5000.0, "{json}");
    for chart in ["e2e-time.svg", "e2e-percentiles.svg"] {
        let svg = std::fs::read_to_string(report.path().join("e2e").join(chart))
            .unwrap_or_else(|e| panic!("the report has no {chart}: {e}"));
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{chart} is not a chart");
    }
    assert!(report.path().join("e2e").join("e2e.json").exists());
    let baseline = fjord(&[
        "bench",
        "baseline",
        "--bytes",
        "8388608",
        "--dir",
        &report.path().display().to_string(),
        "--json",
    ]);
    assert!(
        baseline.status.success(),
        "bench baseline: {}",
        String::from_utf8_lossy(&baseline.stderr)
    );
    let json = String::from_utf8_lossy(&baseline.stdout).trim().to_string();
    for key in [
        "loopback_bytes_per_sec",
        "file_write_first_bytes_per_sec",
        "file_write_bytes_per_sec",
        "file_write_fdatasync_bytes_per_sec",
        "loopback_into_file_bytes_per_sec",
        "file_to_loopback_bytes_per_sec",
        "file_copied_to_loopback_bytes_per_sec",
    ] {
        assert!(json_number(&json, key) > 0.0, "{key} in {json}");
    }
    // Its files are gone afterwards: the directory holds the report's subdirectories only.
    let left: Vec<_> = std::fs::read_dir(report.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "bench baseline left files behind: {left:?}");
}

/// The `"key": value` pairs of a pretty-printed report whose key is `key`, values unparsed.
fn json_values<'a>(json: &'a str, key: &str) -> Vec<&'a str> {
    let pattern = format!("\"{key}\": ");
    json.lines()
        .filter_map(|l| l.trim().strip_prefix(pattern.as_str()))
        .map(|v| v.trim_end_matches(','))
        .collect()
}

#[test]
fn bench_duration_report_and_plot_overlay() {
    let broker = TestBroker::start("bench-duration");
    let bootstrap = broker.bootstrap();
    let dir = TempDir::new("bench-plot");
    let report = |name: &str, inflight: &str| {
        let out = dir.path().join(name).display().to_string();
        let produced = fjord(&[
            "bench",
            "produce",
            "-b",
            &bootstrap,
            "--topic",
            name,
            "--partitions",
            "2",
            "--duration",
            "1",
            "--rate",
            "50000",
            "--batch-records",
            "100",
            "--inflight",
            inflight,
            "--json",
            "--report",
            &out,
        ]);
        assert!(
            produced.status.success(),
            "bench produce --duration 1: {}",
            String::from_utf8_lossy(&produced.stderr)
        );
        let summary = String::from_utf8_lossy(&produced.stdout).trim().to_string();
        // One second at 50,000 records/s: no --records limit ends it, the clock does.
        let seconds = json_number(&summary, "seconds");
        assert!((0.9..3.0).contains(&seconds), "a 1 s run took {seconds} s: {summary}");
        assert!(json_number(&summary, "records") >= 20_000.0, "{summary}");
        for key in ["p90", "p9999", "max"] {
            assert!(json_number(&summary, key) >= 1.0, "latency {key} in {summary}");
        }
        dir.path().join(name).join("produce.json")
    };
    let (a, b) = (report("run-a", "5"), report("run-b", "1"));
    let json = std::fs::read_to_string(&a).expect("the report's JSON");
    assert!(json_values(&json, "records_per_sec").len() >= 2, "per-interval samples: {json}");
    assert_eq!(json_values(&json, "percentile").last(), Some(&"100.0"), "{json}");
    assert_eq!(json_values(&json, "duration_seconds"), ["1"], "{json}");
    for (chart, text) in [("produce-time.svg", "p99.9"), ("produce-percentiles.svg", "99.9%")] {
        let svg = std::fs::read_to_string(dir.path().join("run-a").join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(text), "{chart}: {svg}");
    }
    let out = dir.path().join("plot");
    let plot = fjord(&[
        "bench",
        "plot",
        &a.display().to_string(),
        &b.display().to_string(),
        "--labels",
        "five-in-flight,one-in-flight",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(plot.status.success(), "bench plot: {}", String::from_utf8_lossy(&plot.stderr));
    let time = std::fs::read_to_string(out.join("time.svg")).expect("plot wrote time.svg");
    for series in ["one-in-flight p50", "one-in-flight p99.9", "five-in-flight max", "MB/s"] {
        assert!(time.contains(series), "no {series} in time.svg");
    }
    let percentiles =
        std::fs::read_to_string(out.join("percentiles.svg")).expect("plot wrote percentiles.svg");
    for text in ["<svg", "five-in-flight", "one-in-flight", "99.9%", "polyline"] {
        assert!(percentiles.contains(text), "no {text} in percentiles.svg");
    }
    // A file that is not a report is refused, naming it.
    let wrong = fjord(&[
        "bench",
        "plot",
        &dir.path().join("nope.json").display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(wrong.status.code(), Some(1), "plot of a missing file");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("nope.json"));
    let too_long = fjord(&["bench", "produce", "-b", &bootstrap, "--duration", "999999999"]);
    assert_eq!(too_long.status.code(), Some(2), "--duration past its maximum is a usage error");
}

#[test]
fn cli_errors_are_one_lowercase_line_with_documented_exit_codes() {
    // Nothing listens on port 1: a runtime failure, exit 1, with a hint.
    let unreachable = fjord(&["topic", "list", "-b", "127.0.0.1:1"]);
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.starts_with("fjord: cannot connect to 127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    // A bad value: a usage error, exit 2.
    let broker = TestBroker::start("cli-errors");
    let bad = fjord(&["consume", "-t", "x", "-b", &broker.bootstrap(), "--from", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .starts_with("fjord: --from \"yesterday\" is not understood"));
    // A refused request: exit 1, naming the Kafka error.
    let missing = fjord(&["consume", "-t", "no-such-topic", "-b", &broker.bootstrap(), "-e"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));
}

/// Partitions of the topic `fjord topic alter` grows, before and after.
const ALTERED_FROM: &str = "1";
const ALTERED_TO: usize = 3;
/// Records produced to partition 0 before `fjord topic delete-records` moves its start.
const RECORDS_BEFORE_DELETE: usize = 10;
const DELETE_BEFORE: i64 = 4;

/// The rows of `fjord topic describe`: (partition, start offset, end offset).
fn described_offsets(bootstrap: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    let out = fjord(&["topic", "describe", topic, "-b", bootstrap]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The partition rows: after the two header lines, up to the first that is not one
    // (configs and, for a compacted topic, the cleaning follow).
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .take_while(|line| line.split_whitespace().next().is_some_and(|f| f.parse::<i32>().is_ok()))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| f[i].parse::<i64>().unwrap_or_else(|_| panic!("{line:?}"));
            (number(0) as i32, number(2), number(3))
        })
        .collect()
}

/// Issue 18: `fjord config describe|alter --topic T | --broker ID` read and change configs
/// as `kafka-configs` does; refusals name the error and the config.
#[test]
fn config_describe_and_alter_show_and_change_topic_and_broker_configs() {
    let broker = TestBroker::start("cli-config");
    let bootstrap = broker.bootstrap();
    let ok = |args: &[&str]| {
        let out = fjord(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(&["topic", "create", "configured", "-b", &bootstrap, "-p", "1"]);
    let before = ok(&["config", "describe", "--topic", "configured", "-b", &bootstrap]);
    assert!(before.contains("  retention.ms=604800000 (default)"), "{before}");
    assert!(before.contains("  delete.retention.ms=86400000 (default)"), "{before}");
    assert_eq!(before.lines().filter(|l| l.starts_with("  ")).count(), 37, "{before}");
    let out = ok(&[
        "config",
        "alter",
        "--topic",
        "configured",
        "-b",
        &bootstrap,
        "--set",
        "retention.ms=60000",
        "--set",
        "flush.ms=1000",
    ]);
    assert!(out.contains("changed the configs of topic configured"), "{out}");
    let after = ok(&["config", "describe", "--topic", "configured", "-b", &bootstrap]);
    assert!(after.contains("  retention.ms=60000 (topic)"), "{after}");
    assert!(after.contains("  flush.ms=1000 (topic)"), "{after}");
    ok(&["config", "alter", "--topic", "configured", "-b", &bootstrap, "--delete", "flush.ms"]);
    let deleted = ok(&["config", "describe", "--topic", "configured", "-b", &bootstrap]);
    assert!(deleted.contains("  flush.ms=9223372036854775807 (default)"), "{deleted}");
    // A value Kafka refuses is refused by name.
    let shred = fjord(&[
        "config",
        "alter",
        "--topic",
        "configured",
        "-b",
        &bootstrap,
        "--set",
        "cleanup.policy=shred",
    ]);
    assert_eq!(shred.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&shred.stderr);
    assert!(stderr.contains("INVALID_CONFIG") && stderr.contains("cleanup.policy"), "{stderr}");
    // A test broker runs with the default broker id, 0.
    let brokers = ok(&["config", "describe", "--broker", "0", "-b", &bootstrap]);
    assert!(brokers.contains("  broker.id=0 (static broker, read-only)"), "{brokers}");
    assert!(brokers.contains("  log.retention.ms=604800000 (default)"), "{brokers}");
    assert_eq!(fjord(&["config", "describe", "-b", &bootstrap]).status.code(), Some(2));

    // Broker defaults: cluster-wide, then this broker's own value over it; each reaches the
    // topic that has no value of its own.
    let defaults = ["config", "alter", "--broker-defaults", "-b", &bootstrap];
    let out = ok(&[&defaults[..], &["--set", "log.retention.ms=120000"]].concat());
    assert!(out.contains("changed the configs of the cluster-wide broker defaults"), "{out}");
    let listed = ok(&["config", "describe", "--broker-defaults", "-b", &bootstrap]);
    assert!(listed.contains("  log.retention.ms=120000 (dynamic cluster default)"), "{listed}");
    let own = ["config", "alter", "--broker", "0", "-b", &bootstrap];
    let out = ok(&[&own[..], &["--set", "log.retention.ms=180000"]].concat());
    assert!(out.contains("changed the configs of broker 0"), "{out}");
    let brokers = ok(&["config", "describe", "--broker", "0", "-b", &bootstrap]);
    assert!(brokers.contains("  log.retention.ms=180000 (dynamic broker)"), "{brokers}");
    ok(&["config", "alter", "--topic", "configured", "-b", &bootstrap, "--delete", "retention.ms"]);
    let topic = ok(&["config", "describe", "--topic", "configured", "-b", &bootstrap]);
    assert!(topic.contains("  retention.ms=180000 (dynamic broker)"), "{topic}");
    ok(&[&own[..], &["--delete", "log.retention.ms"]].concat());
    let topic = ok(&["config", "describe", "--topic", "configured", "-b", &bootstrap]);
    assert!(topic.contains("  retention.ms=120000 (dynamic cluster default)"), "{topic}");
    // What cannot change while a broker runs is refused, in Kafka's words.
    let fixed = fjord(&[&defaults[..], &["--set", "num.partitions=3"]].concat());
    assert_eq!(fixed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&fixed.stderr);
    assert!(
        stderr.contains("INVALID_REQUEST")
            && stderr.contains("Cannot update these configs dynamically: [num.partitions]"),
        "{stderr}"
    );
    let unknown = fjord(&["config", "describe", "--broker", "7", "-b", &bootstrap]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("broker 7 is not in the cluster"));
}

#[test]
fn topic_alter_and_delete_records_change_a_running_topic() {
    let broker = TestBroker::start("cli-alter");
    let bootstrap = broker.bootstrap();
    let ok = |args: &[&str]| {
        let out = fjord(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(&["topic", "create", "altered", "-b", &bootstrap, "-p", ALTERED_FROM]);
    let to = ALTERED_TO.to_string();
    let out =
        ok(&["topic", "alter", "altered", "-b", &bootstrap, "-p", &to, "-c", "retention.ms=60000"]);
    assert!(out.contains(&format!("topic altered has {ALTERED_TO} partitions")), "{out}");
    assert!(out.contains("changed the configs of topic altered"), "{out}");
    assert_eq!(described_offsets(&bootstrap, "altered").len(), ALTERED_TO);
    ok(&["topic", "alter", "altered", "-b", &bootstrap, "--delete-config", "retention.ms"]);
    // Refusals: fewer partitions, a bad value (exit 1, Kafka's error named); nothing to do
    // (a usage error, exit 2).
    let fewer = fjord(&["topic", "alter", "altered", "-b", &bootstrap, "-p", "2"]);
    assert_eq!(fewer.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&fewer.stderr).contains("INVALID_PARTITIONS"));
    let bad = fjord(&["topic", "alter", "altered", "-b", &bootstrap, "-c", "retention.ms=soon"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_CONFIG"));
    assert_eq!(fjord(&["topic", "alter", "altered", "-b", &bootstrap]).status.code(), Some(2));

    let lines: String = (0..RECORDS_BEFORE_DELETE).map(|i| format!("m{i}\n")).collect();
    let produce = ["produce", "-t", "altered", "-b", bootstrap.as_str(), "-p", "0"];
    let args: Vec<String> = produce.iter().map(|s| s.to_string()).collect();
    let out = run_with_timeout(
        120,
        Path::new(env!("CARGO_BIN_EXE_fjord")),
        &args,
        Some(lines.as_bytes()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = DELETE_BEFORE.to_string();
    let out = ok(&[
        "topic",
        "delete-records",
        "altered",
        "-b",
        &bootstrap,
        "-p",
        "0",
        "--before",
        &before,
    ]);
    assert!(out.contains(&format!("altered-0 starts at offset {DELETE_BEFORE}")), "{out}");
    let end = RECORDS_BEFORE_DELETE as i64;
    assert_eq!(described_offsets(&bootstrap, "altered")[0], (0, DELETE_BEFORE, end));
    let out =
        ok(&["topic", "delete-records", "altered", "-b", &bootstrap, "-p", "0", "--before", "-1"]);
    assert!(out.contains(&format!("altered-0 starts at offset {end}")), "{out}");
    let past = fjord(&[
        "topic",
        "delete-records",
        "altered",
        "-b",
        &bootstrap,
        "-p",
        "0",
        "--before",
        "99",
    ]);
    assert_eq!(past.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&past.stderr).contains("OFFSET_OUT_OF_RANGE"));
}

#[test]
fn the_cli_moves_past_a_bootstrap_broker_that_accepts_and_never_answers() {
    // A "frozen" broker first in the list: it accepts connections and never answers. The
    // command must give up on it after the handshake timeout and use the next address. The
    // 30 s bound (half the 60 s request timeout) is what fails if it waits the request out.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the frozen listener");
    let frozen_address = frozen.local_addr().expect("address").to_string();
    let _held = std::thread::spawn(move || {
        let accepted: Vec<_> = frozen.incoming().take(4).filter_map(Result::ok).collect();
        std::thread::sleep(std::time::Duration::from_secs(60));
        drop(accepted);
    });
    let broker = TestBroker::start("cli-frozen-bootstrap");
    let bootstrap = format!("{frozen_address},{}", broker.bootstrap());
    let args: Vec<String> =
        ["topic", "list", "-b", &bootstrap].iter().map(|s| s.to_string()).collect();
    let listed = run_with_timeout(30, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, None);
    assert!(
        listed.status.success(),
        "exit {:?}: {}",
        listed.status.code(),
        String::from_utf8_lossy(&listed.stderr)
    );
}

#[test]
fn serve_waits_for_its_port_while_another_socket_still_holds_it() {
    // As after a kill -9: the old listening socket outlives the process for a moment.
    let mut broker = TestBroker::start("port-wait");
    broker.stop();
    // The stopped broker's own listener may linger for a moment too (that is the point).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let holder = loop {
        match std::net::TcpListener::bind(broker.addr()) {
            Ok(holder) => break holder,
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "cannot hold the broker's port {}: {error}",
                    broker.addr()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    };
    // Held until the restarted broker says it found the port taken (or 10 s: then the
    // restart below fails, as it does when `serve` does not wait).
    let stderr_path = broker.next_stderr_path();
    let released = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline
            && !std::fs::read_to_string(&stderr_path)
                .is_ok_and(|log| log.contains("the port is taken"))
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(holder);
    });
    // Fails (the broker exits on the bind) unless `serve` waits for the port.
    broker.restart_on_same_port();
    released.join().expect("holder thread");
    let listed = fjord(&["topic", "list", "-b", &broker.bootstrap()]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(
        broker.stderr().contains("the port is taken"),
        "the wait is logged:\n{}",
        broker.stderr_tail()
    );
}

#[test]
fn several_shards_serve_produce_fetch_groups_and_admin_like_one() {
    for shards in ["1", "3"] {
        let mut broker = TestBroker::start_with(
            &format!("shards-{shards}"),
            &["--shards", shards, "--group-initial-rebalance-delay-ms", "0"],
        );
        let b = broker.bootstrap();
        let created = fjord(&["topic", "create", "spread", "-p", "6", "-b", &b]);
        assert!(
            created.status.success(),
            "shards {shards}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        // Keyed records with acks=all and acks=1 land on partitions owned by every shard.
        let lines: String = (0..600).map(|i| format!("k{}:{i}\n", i % 13)).collect();
        for acks in ["-1", "1"] {
            let args: Vec<String> = [
                "produce",
                "-t",
                "spread",
                "-K",
                ":",
                "--acks",
                acks,
                "--batch-records",
                "25",
                "-b",
                &b,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let produced = run_with_timeout(
                120,
                Path::new(env!("CARGO_BIN_EXE_fjord")),
                &args,
                Some(lines.as_bytes()),
            );
            assert!(
                produced.status.success(),
                "shards {shards} acks {acks}: {}",
                String::from_utf8_lossy(&produced.stderr)
            );
        }
        // Fetch from every partition, wherever its shard: all 1200 records, in order per key.
        let consumed = fjord(&["consume", "-t", "spread", "-e", "--print-keys", "-b", &b]);
        assert!(
            consumed.status.success(),
            "shards {shards}: {}",
            String::from_utf8_lossy(&consumed.stderr)
        );
        let text = String::from_utf8_lossy(&consumed.stdout);
        assert_eq!(text.lines().count(), 1200, "shards {shards}");
        let mut last: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        let mut round: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for line in text.lines() {
            let (key, value) = line.split_once('\t').expect("key and value");
            let value: i64 = value.parse().expect("a number");
            if let Some(previous) = last.insert(key, value) {
                if value <= previous {
                    *round.entry(key).or_default() += 1;
                }
            }
        }
        // Each key was produced twice (acks=all, then acks=1): exactly one wrap per key.
        assert!(
            round.values().all(|r| *r == 1),
            "shards {shards}: per-key order broken: {round:?}"
        );
        // A consumer group (coordinated on shard 0) commits partitions owned by other shards.
        let grouped = fjord(&["consume", "-t", "spread", "-g", "g", "-e", "-b", &b]);
        assert_eq!(
            String::from_utf8_lossy(&grouped.stdout).lines().count(),
            1200,
            "shards {shards}"
        );
        let again = fjord(&["consume", "-t", "spread", "-g", "g", "-e", "-b", &b]);
        assert_eq!(
            String::from_utf8_lossy(&again.stdout).lines().count(),
            0,
            "shards {shards}: committed offsets"
        );
        // Delete reaches every shard's partitions; their directories are removed in the
        // background (renamed at once, then removed by the reaper thread).
        assert!(fjord(&["topic", "delete", "spread", "-b", &b]).status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<_> = std::fs::read_dir(broker.data_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("spread-"))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "shards {shards}: partition dirs left 10 s after delete: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker.stop();
    }
}

/// Fjord's CLI is a Kafka client too: against Apache Kafka 4.4, which speaks newer versions
/// than Fjord, it must still fill the fields of the versions it picks (regression: `topic
/// delete` sent DeleteTopics v6 with the v0-5 name list, and Kafka saw no topic).
#[test]
fn the_cli_works_against_apache_kafka_4_4() {
    let kafka = crate::support::kafka::KafkaBroker::start("cli-kafka");
    let b = kafka.bootstrap();
    let ok = |args: &[&str], stdin: Option<&[u8]>| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = run_with_timeout(120, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, stdin);
        assert!(
            out.status.success(),
            "fjord {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            kafka.output_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["topic", "create", "cli-k", "-p", "2", "-b", &b], None);
    // Kafka lists a new topic's leader a moment before it takes writes: retry the first produce.
    let lines: String = (0..50).map(|i| format!("k{}:{i}\n", i % 5)).collect();
    crate::support::wait_until("a produce Kafka takes", std::time::Duration::from_secs(30), || {
        let args: Vec<String> = ["produce", "-t", "cli-k", "-K", ":", "--acks", "-1", "-b", &b]
            .iter()
            .map(|s| s.to_string())
            .collect();
        run_with_timeout(120, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, Some(lines.as_bytes()))
            .status
            .success()
            .then_some(())
    });
    let consumed = ok(&["consume", "-t", "cli-k", "-e", "--group", "cli-g", "-b", &b], None);
    assert!(consumed.lines().count() >= 50, "consumed: {consumed}");
    let described = ok(&["group", "describe", "cli-g", "-b", &b], None);
    assert!(described.contains("cli-k"), "group describe: {described}");
    // The bench creates its topic and must wait for Kafka's leaders to take writes.
    let bench = ok(
        &[
            "bench",
            "produce",
            "-t",
            "cli-bench",
            "--partitions",
            "2",
            "--records",
            "20000",
            "--json",
            "-b",
            &b,
        ],
        None,
    );
    assert!(bench.contains("\"records\":20000"), "bench: {bench}");
    ok(&["topic", "delete", "cli-k", "-b", &b], None);
    // Kafka's brokers learn of the deletion from its controller a moment later.
    crate::support::wait_until(
        "the deleted topic to leave the listing",
        std::time::Duration::from_secs(30),
        || {
            (!ok(&["topic", "list", "-b", &b], None).lines().any(|l| l.trim() == "cli-k"))
                .then_some(())
        },
    );
}
