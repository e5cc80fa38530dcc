//! Differential tests: the same requests go to a real Apache Kafka 4.4 (KRaft, single node,
//! from its Maven jars) and to Fjord, and their answers are compared field by field.
//!
//! Fields that differ between any two brokers are masked (`compare::MASKED`); every other
//! difference fails the test unless `docs/compatibility.md` lists it, with its reason, in its
//! table of differences; an entry there that no longer matches anything fails it too, so the
//! document stays true. The advertised ApiVersions of both brokers are compared with the
//! document's table of APIs in the same way.

mod cases;
mod compare;
mod describe_cases;
mod session;
mod topic_changes;
mod txn_cases;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use crate::support::kafka::KafkaBroker;
use crate::support::TestBroker;
use compare::{differences, known_differences, Difference};
use session::Session;

/// Runs every case against one broker and returns its observations.
fn observe(addr: SocketAddr) -> Vec<(String, String)> {
    let mut session = Session::new(addr);
    cases::run_all(&mut session);
    session.observations
}

#[test]
fn fjord_answers_as_apache_kafka_4_4_answers() {
    let kafka = KafkaBroker::start("differential");
    let fjord =
        TestBroker::start_with("differential", &["--group-initial-rebalance-delay-ms", "0"]);
    let (kafka_addr, fjord_addr) = (kafka.addr(), fjord.addr());
    let (from_fjord, from_kafka) = std::thread::scope(|scope| {
        let kafka_side = scope.spawn(move || observe(kafka_addr));
        let fjord_side = observe(fjord_addr);
        (fjord_side, kafka_side.join().expect("the Kafka side of the suite panicked"))
    });
    let found = differences(&from_fjord, &from_kafka);
    let known = known_differences();
    let unexplained: Vec<&Difference> =
        found.iter().filter(|d| !known.iter().any(|k| k.covers(d))).collect();
    let stale: Vec<_> = known.iter().filter(|k| !found.iter().any(|d| k.covers(d))).collect();
    let mut report = String::new();
    for d in &unexplained {
        let _ = writeln!(
            report,
            "| `{}` | `{}` | {} | {} |",
            d.case,
            d.path,
            cell(&d.fjord),
            cell(&d.kafka)
        );
    }
    for k in &stale {
        let _ = writeln!(
            report,
            "stale: docs/compatibility.md line {}: `{}` `{}` matches no difference any more",
            k.line, k.case, k.path
        );
    }
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "{} differences from Kafka 4.4 not in docs/compatibility.md, {} stale entries \
         (| case | field | Fjord | Kafka |):\n{report}\n({} cases compared)",
        unexplained.len(),
        stale.len(),
        from_fjord.len()
    );
    assert!(from_fjord.len() > 200, "the suite ran only {} cases", from_fjord.len());
}

/// One table cell: at most this many characters of a value.
const CELL_CHARS_MAX: usize = 60;

fn cell(value: &str) -> String {
    let short: String = value.chars().take(CELL_CHARS_MAX).collect();
    let short = if short.len() < value.len() { format!("{short}...") } else { short };
    short.replace('|', "\\|")
}

fn advertised(addr: SocketAddr) -> BTreeMap<i16, (i16, i16)> {
    let mut session = Session::new(addr);
    let mut request = ApiVersionsRequest::default();
    request.client_software_name =
        kafka_protocol::protocol::StrBytes::from_static_str("fjord-differential");
    request.client_software_version = kafka_protocol::protocol::StrBytes::from_static_str("1.0");
    let response: ApiVersionsResponse =
        session.call(ApiKey::ApiVersions, 3, &request).response("ApiVersions");
    assert_eq!(response.error_code, 0);
    response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect()
}

/// The table of APIs in `docs/compatibility.md`, between its markers, as both brokers
/// advertise them.
#[test]
fn the_api_table_matches_what_both_brokers_advertise() {
    let kafka = KafkaBroker::start("differential-apis");
    let fjord = TestBroker::start("differential-apis");
    let (from_kafka, from_fjord) = (advertised(kafka.addr()), advertised(fjord.addr()));
    let mut table =
        String::from("| API | key | Fjord | Kafka 4.4 | status |\n|---|---|---|---|---|\n");
    for key in from_kafka.keys().chain(from_fjord.keys()).collect::<std::collections::BTreeSet<_>>()
    {
        let name = ApiKey::try_from(*key)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| format!("key {key}"));
        let range = |r: Option<&(i16, i16)>| r.map_or("-".to_string(), |(a, b)| format!("{a}-{b}"));
        let (f, k) = (from_fjord.get(key), from_kafka.get(key));
        let status = match (f, k) {
            (Some(f), Some(k)) if f == k => "served",
            (Some(_), Some(_)) => "served, other versions",
            (Some(_), None) => "Fjord only",
            (None, _) => "not yet",
        };
        let _ = writeln!(table, "| {name} | {key} | {} | {} | {status} |", range(f), range(k));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md");
    let doc = std::fs::read_to_string(&path).expect("docs/compatibility.md");
    let (start, end) = ("<!-- api-table -->\n", "<!-- /api-table -->");
    let documented =
        doc.split_once(start).and_then(|(_, rest)| rest.split_once(end)).map(|(table, _)| table);
    assert_eq!(
        documented,
        Some(table.as_str()),
        "docs/compatibility.md's API table (between {start:?} and {end:?}) should read:\n{table}"
    );
}
