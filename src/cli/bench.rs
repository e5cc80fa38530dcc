//! `fjord bench`: a load generator that speaks the Kafka protocol, for Fjord or any other
//! Kafka-compatible broker, and `fjord bench baseline`, which measures what this machine can
//! do without a broker (a loopback TCP stream, sequential file writes with and without
//! fdatasync), so results can be reported as ratios measured in one run.
//!
//! Load runs use plain threads and blocking sockets: each connection keeps up to
//! `--inflight` requests outstanding (pipelining, as Kafka clients do), and latency is
//! measured per request, from send to response (produce) or from send to delivery (e2e, where
//! each record carries its send time).

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use fjord_storage::batch::build;
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use kafka_protocol::ResponseError;

use super::client::list_offsets_by_leader;
use super::client::Client;
use super::error::{error_name, CliError};

/// Requests outstanding per connection at most.
const INFLIGHT_MAX: usize = 64;
/// Connections at most.
const CONNECTIONS_MAX: usize = 256;
/// Largest record the bench builds.
const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest produce batch built (per partition per request).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Largest response accepted.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Produce request version used: v7 is understood by every Kafka since 2.1 and by Fjord.
const PRODUCE_VERSION: i16 = 7;
/// How long the broker may take to meet `--acks` for one Produce request.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
const INIT_PRODUCER_ID_VERSION: i16 = 1;
/// Fetch request version used (v4+: record batches v2; v11 is Kafka 2.3+).
const FETCH_VERSION: i16 = 11;

#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {
    #[command(subcommand)]
    mode: BenchMode,
}

#[derive(Debug, clap::Subcommand)]
enum BenchMode {
    /// Produce records as fast as possible (or at --rate).
    Produce(LoadArgs),
    /// Consume records from the beginning of the topic.
    Consume(LoadArgs),
    /// Produce and consume at once; latency is from send to delivery.
    E2e(LoadArgs),
    /// Measure this machine without a broker: loopback TCP and sequential file writes.
    Baseline(BaselineArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct LoadArgs {
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, short = 't', default_value = "fjord-bench")]
    topic: String,
    /// Partitions of the topic (created with this many if it does not exist).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records per batch (one batch per partition per request).
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// -1, 0 or 1.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    acks: i16,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    inflight: usize,
    /// Records per second in total (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Produce (and e2e) as an idempotent producer: a producer id per connection from
    /// InitProducerId, sequence numbers per partition, as Kafka's Java client does by default.
    #[arg(long)]
    idempotent: bool,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Write the JSON and an SVG chart of throughput and latency over time into DIR.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
struct BaselineArgs {
    /// Bytes to stream and to write.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Bytes per write (and per fdatasync in the synced run).
    #[arg(long, default_value_t = 1 << 20)]
    chunk_bytes: usize,
    /// Directory for the file test [default: the temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Shared measurements of a run.
struct Stats {
    /// Microseconds after `epoch` at which the last record was completed.
    finished_us: AtomicU64,
    epoch: Instant,
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<(Histogram<u64>, Histogram<u64>)>,
    done: AtomicBool,
}

impl Stats {
    fn new() -> Arc<Stats> {
        let histogram =
            || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Arc::new(Stats {
            finished_us: AtomicU64::new(0),
            epoch: Instant::now(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new((histogram(), histogram())),
            done: AtomicBool::new(false),
        })
    }
    /// Counts completed records and notes when.
    fn complete(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.finished_us.fetch_max(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    fn record_latency(&self, micros: u64, count: u64) {
        let mut latency = self.latency.lock().expect("latency lock");
        let value = micros.clamp(1, 60_000_000);
        let _ = latency.0.record_n(value, count);
        let _ = latency.1.record_n(value, count);
    }
}

/// One point of the time series: (seconds since start, records/s, p99 µs in the interval).
type Sample = (f64, f64, u64);

pub(super) fn run(args: BenchArgs) -> Result<(), CliError> {
    match args.mode {
        BenchMode::Produce(load) => load_run("produce", load),
        BenchMode::Consume(load) => load_run("consume", load),
        BenchMode::E2e(load) => load_run("e2e", load),
        BenchMode::Baseline(baseline) => run_baseline(baseline),
    }
}

fn validate(load: &LoadArgs) -> Result<(), CliError> {
    if !(1..=CONNECTIONS_MAX).contains(&load.connections) {
        return Err(CliError::usage(format!(
            "--connections must be between 1 and {CONNECTIONS_MAX}"
        )));
    }
    if !(1..=INFLIGHT_MAX).contains(&load.inflight) {
        return Err(CliError::usage(format!("--inflight must be between 1 and {INFLIGHT_MAX}")));
    }
    if load.record_bytes < 8 || load.record_bytes > RECORD_BYTES_MAX {
        return Err(CliError::usage(format!(
            "--record-bytes must be between 8 and {RECORD_BYTES_MAX}"
        )));
    }
    if !matches!(load.acks, -1..=1) {
        return Err(CliError::usage("--acks must be -1, 0 or 1"));
    }
    if load.partitions < 1 || load.batch_records == 0 || load.records == 0 {
        return Err(CliError::usage(
            "--partitions, --batch-records and --records must be at least 1",
        ));
    }
    Ok(())
}

fn load_run(mode: &'static str, load: LoadArgs) -> Result<(), CliError> {
    validate(&load)?;
    let mut client = Client::connect(&load.bootstrap)?;
    let leaders = ensure_topic(&mut client, &load)?;
    let target = load.records;
    let mut handles = Vec::new();
    let partitions: Vec<i32> = leaders.keys().copied().collect();
    let producing = mode != "consume";
    let consuming = mode != "produce";
    let e2e = mode == "e2e";
    let addresses = client.broker_addresses();
    // Consumers start at the end (e2e) or the beginning, fixed before any producer runs:
    // one ListOffsets per leader.
    let starts = if consuming {
        list_offsets_by_leader(
            &mut client,
            &load.topic,
            leaders.iter().map(|(&p, &leader)| (p, leader)),
            if e2e { -1 } else { -2 },
        )?
    } else {
        BTreeMap::new()
    };
    // The clock starts once the topic, its leaders and the start offsets are known.
    let stats = Stats::new();
    let started = stats.epoch;
    let producers_done = Arc::new(AtomicBool::new(!producing));
    let mut producer_handles = Vec::new();
    if producing {
        let produce_stats = if e2e { Stats::new() } else { Arc::clone(&stats) };
        // Each connection sends to its own share of the partitions (dealt by position, so
        // none is empty) and its share of the records and the rate; with more connections
        // than partitions, several connections share each partition (fan-in).
        let connections = load.connections;
        for c in 0..connections {
            let mine: Vec<i32> = if connections <= partitions.len() {
                partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % connections == c)
                    .map(|(_, p)| *p)
                    .collect()
            } else {
                vec![partitions[c % partitions.len()]]
            };
            let share =
                target / connections as u64 + u64::from((c as u64) < target % connections as u64);
            let mut load = load.clone();
            load.connections = connections;
            let (leaders, addresses, stats) =
                (leaders.clone(), addresses.clone(), Arc::clone(&produce_stats));
            producer_handles.push(std::thread::spawn(move || {
                produce_worker(&load, &mine, &leaders, &addresses, share, e2e, &stats)
            }));
        }
        // Joins the producers, then tells consumers that no more data is coming.
        let done = Arc::clone(&producers_done);
        handles.push(std::thread::spawn(move || {
            let mut result = Ok(());
            for handle in producer_handles {
                match handle.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => result = Err(error),
                    Err(_) => result = Err(CliError::failure("a producer thread panicked")),
                }
            }
            done.store(true, Ordering::Relaxed);
            result
        }));
    }
    if consuming {
        let consumers = load.connections.min(partitions.len());
        for c in 0..consumers {
            let mine: Vec<i32> =
                partitions.iter().copied().filter(|p| (*p as usize) % consumers == c).collect();
            let (load, leaders, addresses, stats, done) = (
                load.clone(),
                leaders.clone(),
                addresses.clone(),
                Arc::clone(&stats),
                Arc::clone(&producers_done),
            );
            let starts: BTreeMap<i32, i64> = mine.iter().map(|p| (*p, starts[p])).collect();
            handles.push(std::thread::spawn(move || {
                consume_worker(&load, starts, &leaders, &addresses, target, e2e, &stats, &done)
            }));
        }
    }
    let samples = progress(&stats, target, started, load.json, &handles);
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = Some(error),
            Err(_) => failure = Some(CliError::failure("a bench thread panicked")),
        }
    }
    stats.done.store(true, Ordering::Relaxed);
    if let Some(error) = failure {
        return Err(error);
    }
    // The time to the last completed record, not to when this thread noticed.
    let seconds = (stats.finished_us.load(Ordering::Relaxed) as f64 / 1e6).max(1e-6);
    let records = stats.records.load(Ordering::Relaxed);
    let bytes = stats.bytes.load(Ordering::Relaxed);
    let histogram = stats.latency.lock().expect("latency lock").0.clone();
    let summary = Summary {
        mode,
        records,
        bytes,
        seconds,
        p50: histogram.value_at_quantile(0.50),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        errors: stats.errors.load(Ordering::Relaxed),
    };
    let json = summary.json(&load);
    if load.json {
        println!("{json}");
    } else {
        summary.print(&load);
    }
    if let Some(dir) = &load.report {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::write(dir.join(format!("{mode}.json")), format!("{json}\n"))
            .map_err(|e| CliError::failure(format!("cannot write report: {e}")))?;
        std::fs::write(dir.join(format!("{mode}.svg")), svg_chart(mode, &samples))
            .map_err(|e| CliError::failure(format!("cannot write report: {e}")))?;
        if !load.json {
            eprintln!("report written to {}", dir.display());
        }
    }
    Ok(())
}

struct Summary {
    mode: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    errors: u64,
}

impl Summary {
    fn json(&self, load: &LoadArgs) -> String {
        format!(
            "{{\"mode\":\"{}\",\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"records_per_sec\":{:.0},\"bytes_per_sec\":{:.0},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"errors\":{},\"config\":{{\"bootstrap\":\"{}\",\"topic\":\"{}\",\"partitions\":{},\"record_bytes\":{},\"batch_records\":{},\"acks\":{},\"connections\":{},\"inflight\":{},\"rate\":{},\"idempotent\":{}}}}}",
            self.mode,
            self.records,
            self.bytes,
            self.seconds,
            self.records as f64 / self.seconds.max(1e-9),
            self.bytes as f64 / self.seconds.max(1e-9),
            self.p50,
            self.p99,
            self.p999,
            self.max,
            self.errors,
            load.bootstrap,
            load.topic,
            load.partitions,
            load.record_bytes,
            load.batch_records,
            load.acks,
            load.connections,
            load.inflight,
            load.rate.map_or("null".to_string(), |r| r.to_string()),
            load.idempotent,
        )
    }

    fn print(&self, load: &LoadArgs) {
        let rps = self.records as f64 / self.seconds.max(1e-9);
        let mbps = self.bytes as f64 / self.seconds.max(1e-9) / 1e6;
        println!(
            "{}: {} records of {} bytes in {:.2} s: {:.0} records/s, {:.1} MB/s",
            self.mode, self.records, load.record_bytes, self.seconds, rps, mbps
        );
        let what = if self.mode == "e2e" { "produce-to-consume" } else { "request" };
        println!(
            "{what} latency (µs): p50 {}  p99 {}  p99.9 {}  max {}",
            self.p50, self.p99, self.p999, self.max
        );
        if self.errors > 0 {
            println!("errors: {}", self.errors);
        }
    }
}

fn ensure_topic(client: &mut Client, load: &LoadArgs) -> Result<BTreeMap<i32, i32>, CliError> {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(load.topic.clone().into());
    topic.num_partitions = load.partitions;
    topic.replication_factor = -1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    let response = client.send(-1, &request)?;
    if let Some(result) = response.topics.first() {
        if result.error_code != 0 && result.error_code != ResponseError::TopicAlreadyExists.code() {
            return Err(CliError::failure(format!(
                "cannot create topic {}: {}",
                load.topic,
                error_name(result.error_code)
            )));
        }
    }
    // A new topic may be listed before its partitions have leaders, and a leader may be
    // listed before it takes requests (Kafka): wait until every leader answers ListOffsets.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(TOPIC_READY_MS_MAX);
    loop {
        let failure = match topic_leaders(client, &load.topic) {
            Ok(leaders) => match super::client::list_offsets_by_leader(
                client,
                &load.topic,
                leaders.iter().map(|(p, l)| (*p, *l)),
                -1,
            ) {
                Ok(_) => return Ok(leaders),
                Err(error) => error,
            },
            Err(error) => error,
        };
        if std::time::Instant::now() >= deadline {
            return Err(failure);
        }
        std::thread::sleep(std::time::Duration::from_millis(TOPIC_READY_RETRY_MS));
    }
}

/// How long the bench waits for a topic's partitions to have leaders that take requests.
const TOPIC_READY_MS_MAX: u64 = 30_000;
/// Pause between those checks.
const TOPIC_READY_RETRY_MS: u64 = 100;

/// Partition -> leader of `topic`, once every partition has one.
fn topic_leaders(client: &mut Client, topic_name: &str) -> Result<BTreeMap<i32, i32>, CliError> {
    let metadata = client.metadata(Some(&[topic_name.to_string()]), false)?;
    let topic =
        metadata.topics.first().ok_or_else(|| CliError::failure("empty Metadata response"))?;
    if topic.error_code != 0 {
        return Err(CliError::failure(format!(
            "topic {topic_name}: {}",
            error_name(topic.error_code)
        )));
    }
    if topic.partitions.is_empty() || topic.partitions.iter().any(|p| p.leader_id.0 < 0) {
        return Err(CliError::failure(format!(
            "topic {topic_name} has partitions without a leader yet"
        )));
    }
    Ok(topic.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A raw Kafka connection for the bench: frames out, frames in, no negotiation beyond the
/// fixed versions above.
struct Wire {
    stream: TcpStream,
    correlation_id: i32,
    address: String,
    /// Response bytes, reused: a response's records are slices of it, and once they are
    /// dropped the next response lands in the same memory (no fresh pages to fault in for
    /// every multi-megabyte fetch response).
    buf: BytesMut,
}

impl Wire {
    fn connect(address: &str) -> Result<Wire, CliError> {
        let addr = address
            .to_socket_addrs()
            .map_err(|e| CliError::failure(format!("cannot resolve {address}: {e}")))?
            .next()
            .ok_or_else(|| CliError::failure(format!("no address for {address}")))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| CliError::failure(format!("cannot connect to {address}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        Ok(Wire { stream, correlation_id: 0, address: address.to_string(), buf: BytesMut::new() })
    }

    fn send<R: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<i32, CliError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame =
            crate::protocol::encode_request(key, version, self.correlation_id, CLIENT_ID, request)
                .map_err(|e| CliError::failure(format!("encode: {e}")))?;
        self.stream
            .write_all(&frame)
            .map_err(|e| CliError::failure(format!("send to {}: {e}", self.address)))?;
        Ok(self.correlation_id)
    }

    /// Sends a Produce request of `parts` (partition, records) of one topic with one
    /// vectored write: the records go to the socket from where they are, not copied into an
    /// encoded request first (the load generator shares two cores with the broker it
    /// measures).
    fn send_produce(
        &mut self,
        acks: i16,
        timeout_ms: i32,
        topic: &str,
        parts: &[(i32, Bytes)],
    ) -> Result<i32, CliError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let pieces = produce_pieces(self.correlation_id, acks, timeout_ms, topic, parts);
        write_all_pieces(&mut self.stream, &pieces)
            .map_err(|e| CliError::failure(format!("send to {}: {e}", self.address)))?;
        Ok(self.correlation_id)
    }

    /// The next response; responses come back in request order, which the pipelining
    /// writer and this reader both rely on, so the correlation id is not checked here.
    fn receive<T: Decodable>(&mut self, key: ApiKey, version: i16) -> Result<T, CliError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| CliError::failure(format!("receive from {}: {e}", self.address)))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > RESPONSE_BYTES_MAX {
            return Err(CliError::failure(format!("{} sent a {size}-byte response", self.address)));
        }
        // Reclaims the memory of the previous response if nothing refers to it any more.
        self.buf.clear();
        self.buf.reserve(size as usize);
        read_into_spare(&self.stream, &mut self.buf, size as usize)
            .map_err(|e| CliError::failure(format!("receive from {}: {e}", self.address)))?;
        let payload = self.buf.split().freeze();
        crate::protocol::decode_response(key, version, None, payload)
            .map_err(|e| CliError::failure(format!("bad {key:?} response: {e:#}")))
    }
}

/// Reads from `stream` until `buf` holds `len` bytes, into its spare capacity (which the
/// caller reserved), without zeroing it first.
// The load generator's own receive path: raw `recv` into spare capacity, no copy.
#[allow(unsafe_code)]
fn read_into_spare(stream: &TcpStream, buf: &mut BytesMut, len: usize) -> std::io::Result<()> {
    use bytes::BufMut;
    use std::os::fd::AsRawFd;
    while buf.len() < len {
        let missing = len - buf.len();
        let spare = buf.spare_capacity_mut();
        let want = missing.min(spare.len());
        if want == 0 {
            return Err(std::io::Error::other("receive buffer has no room"));
        }
        // SAFETY: `recv` writes at most `want` bytes into the spare capacity, which is
        // allocated and unaliased (borrowed mutably from `buf`).
        let got = unsafe { libc::recv(stream.as_raw_fd(), spare.as_mut_ptr().cast(), want, 0) };
        match got {
            n if n > 0 => {
                // SAFETY: the kernel initialised exactly these `n` bytes.
                unsafe { buf.advance_mut(n as usize) };
            }
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// Streams `total` bytes over one loopback TCP connection: `send` writes them into the
/// connected stream, and a second thread hands each chunk it reads (up to 1 MiB) to `take`.
/// Bytes per second, from before the connect to the last byte taken; `what` names the case
/// in errors.
fn loopback_stream(
    what: &str,
    total: u64,
    send: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
    mut take: impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'static,
) -> Result<f64, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| CliError::failure(format!("{what}: bind: {e}")))?;
    let address = listener.local_addr().map_err(|e| CliError::failure(format!("{what}: {e}")))?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < total {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                break;
            }
            take(&buf[..n])?;
            got += n as u64;
        }
        Ok(got)
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(address)
        .map_err(|e| CliError::failure(format!("{what}: connect: {e}")))?;
    let sent = send(&mut stream);
    drop(stream);
    // The reader's own failure (a full disk, say) explains a failed send, so it comes first.
    let got = reader
        .join()
        .map_err(|_| CliError::failure(format!("{what}: the reader panicked")))?
        .map_err(|e| CliError::failure(format!("{what}: read: {e}")))?;
    sent.map_err(|e| CliError::failure(format!("{what}: send: {e}")))?;
    if got < total {
        return Err(CliError::failure(format!("{what}: {got} of {total} bytes arrived")));
    }
    Ok(got as f64 / started.elapsed().as_secs_f64())
}

/// Removes a file when dropped (the baseline's scratch file, whichever way it ends).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends the first `total` bytes of `file` into `stream` with `sendfile(2)`, at most
/// `chunk_bytes` per call.
// The bench client sends a batch file with `sendfile`, as a fast producer would.
#[allow(unsafe_code)]
fn send_file(
    stream: &mut TcpStream,
    file: &std::fs::File,
    total: u64,
    chunk_bytes: usize,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut offset: libc::off_t = 0;
    while (offset as u64) < total {
        let want = (total - offset as u64).min(chunk_bytes as u64) as usize;
        // SAFETY: both descriptors are open for the call; the kernel advances `offset`.
        let sent =
            unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, want) };
        match sent {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => {}
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// Sends the first `total` bytes of `file` into `stream` through a buffer of `chunk_bytes`
/// (pread, then write).
fn copy_file(
    stream: &mut TcpStream,
    file: &std::fs::File,
    total: u64,
    chunk_bytes: usize,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; chunk_bytes];
    let mut position = 0u64;
    while position < total {
        let want = (total - position).min(chunk_bytes as u64) as usize;
        file.read_exact_at(&mut buf[..want], position)?;
        stream.write_all(&buf[..want])?;
        position += want as u64;
    }
    Ok(())
}

/// Client id of every bench request.
const CLIENT_ID: &str = "fjord-bench";

/// A Produce request (`PRODUCE_VERSION`, request header v1) of `parts` (partition, records)
/// of one topic, framed, as pieces to write one after the other: small encoded parts, and
/// each partition's records as given. Byte for byte what the codec encodes
/// (`produce_pieces_match_the_codec`).
fn produce_pieces(
    correlation_id: i32,
    acks: i16,
    timeout_ms: i32,
    topic: &str,
    parts: &[(i32, Bytes)],
) -> Vec<Bytes> {
    use bytes::BufMut;
    let put_string = |out: &mut BytesMut, text: &str| {
        out.put_i16(text.len() as i16);
        out.put_slice(text.as_bytes());
    };
    let mut head = BytesMut::with_capacity(64 + topic.len());
    head.put_i32(0); // the frame size, set below
    head.put_i16(ApiKey::Produce as i16);
    head.put_i16(PRODUCE_VERSION);
    head.put_i32(correlation_id);
    put_string(&mut head, CLIENT_ID);
    head.put_i16(-1); // transactional id: null
    head.put_i16(acks);
    head.put_i32(timeout_ms);
    head.put_i32(1); // topics
    put_string(&mut head, topic);
    head.put_i32(parts.len() as i32);
    let mut pieces = Vec::with_capacity(1 + 2 * parts.len());
    let mut prefix = head;
    let mut size = 0usize;
    for (index, records) in parts {
        prefix.put_i32(*index);
        prefix.put_i32(records.len() as i32);
        size += prefix.len() + records.len();
        pieces.push(std::mem::take(&mut prefix).freeze());
        pieces.push(records.clone());
        prefix = BytesMut::with_capacity(8);
    }
    if parts.is_empty() {
        size += prefix.len();
        pieces.push(prefix.freeze());
    }
    let mut first = BytesMut::from(&pieces[0][..]);
    first[..4].copy_from_slice(&((size - 4) as i32).to_be_bytes());
    pieces[0] = first.freeze();
    pieces
}

/// Writes every piece, in order, with vectored writes.
fn write_all_pieces(stream: &mut TcpStream, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        pieces.iter().filter(|p| !p.is_empty()).map(|p| std::io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match stream.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A producer id and epoch for an idempotent producer, asked on `wire` before any produce.
fn init_producer_id(wire: &mut Wire) -> Result<(i64, i16), CliError> {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = -1;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    wire.send(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION, &request)?;
    let response: InitProducerIdResponse =
        wire.receive(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION)?;
    if response.error_code != 0 {
        return Err(CliError::failure(format!(
            "InitProducerId at {} failed: {}",
            wire.address,
            error_name(response.error_code)
        )));
    }
    Ok((response.producer_id.0, response.producer_epoch))
}

fn batch_for(records: usize, record_bytes: usize, stamp: Option<u64>) -> Bytes {
    let mut value = vec![0x5au8; record_bytes];
    if let Some(micros) = stamp {
        value[..8].copy_from_slice(&micros.to_be_bytes());
    }
    let list: Vec<build::Record<'_>> = (0..records)
        .map(|_| build::Record { key: None, value: Some(&value), timestamp_delta: 0 })
        .collect();
    Bytes::from(build::batch(&list, (now_micros() / 1000) as i64))
}

/// Requests in flight on one connection: the writer waits while there are `inflight` of
/// them; the reader thread completes them in order as responses arrive.
struct InFlight {
    queue: Mutex<VecDeque<(Instant, u64)>>,
    space: std::sync::Condvar,
}

fn produce_worker(
    load: &LoadArgs,
    partitions: &[i32],
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    records: u64,
    e2e: bool,
    stats: &Arc<Stats>,
) -> Result<(), CliError> {
    let batch_records = load.batch_records.min((BATCH_BYTES_MAX / (load.record_bytes + 16)).max(1));
    // Partitions grouped by leader: one socket per leader, requests round-robin.
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        by_leader.entry(leaders[p]).or_default().push(*p);
    }
    let mut wires = Vec::new();
    let mut readers = Vec::new();
    for (leader, parts) in by_leader {
        let address = addresses
            .get(&leader)
            .ok_or_else(|| CliError::failure(format!("no address for broker {leader}")))?;
        let mut wire = Wire::connect(address)?;
        // (producer id, epoch) of this connection, asked before the reader thread starts
        // taking the responses; the next sequence per partition is kept beside the wire.
        let producer = if load.idempotent { Some(init_producer_id(&mut wire)?) } else { None };
        let inflight = Arc::new(InFlight {
            queue: Mutex::new(VecDeque::new()),
            space: std::sync::Condvar::new(),
        });
        if load.acks != 0 {
            let mut reader = Wire {
                stream: wire.stream.try_clone().map_err(|e| CliError::failure(e.to_string()))?,
                correlation_id: 0,
                address: wire.address.clone(),
                buf: BytesMut::new(),
            };
            let (inflight, stats, record_bytes) =
                (Arc::clone(&inflight), Arc::clone(stats), load.record_bytes as u64);
            readers.push(std::thread::spawn(move || -> Result<(), CliError> {
                loop {
                    let response: ProduceResponse =
                        match reader.receive(ApiKey::Produce, PRODUCE_VERSION) {
                            Ok(response) => response,
                            // The writer shuts the socket down once everything was answered.
                            Err(_) if inflight.queue.lock().expect("inflight lock").is_empty() => {
                                return Ok(())
                            }
                            Err(error) => return Err(error),
                        };
                    let (at, count) = {
                        let mut queue = inflight.queue.lock().expect("inflight lock");
                        let front = queue
                            .pop_front()
                            .ok_or_else(|| CliError::failure("a response nobody asked for"))?;
                        inflight.space.notify_all();
                        front
                    };
                    if let Some(p) = response
                        .responses
                        .iter()
                        .flat_map(|t| &t.partition_responses)
                        .find(|p| p.error_code != 0)
                    {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(CliError::failure(format!(
                            "produce to partition {} failed: {}",
                            p.index,
                            error_name(p.error_code)
                        )));
                    }
                    if !e2e {
                        stats.record_latency(at.elapsed().as_micros() as u64, 1);
                    }
                    stats.complete(count, count * record_bytes);
                }
            }));
        }
        wires.push((wire, parts, inflight, producer, BTreeMap::<i32, i32>::new()));
    }
    let template = batch_for(batch_records, load.record_bytes, None);
    let rate_per_thread = load.rate.map(|r| (r as f64 / load.connections as f64).max(1.0));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut turn = 0usize;
    while sent < records {
        if let Some(rate) = rate_per_thread {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let index = turn % wires.len();
        turn += 1;
        let (wire, parts, inflight, producer, sequences) = &mut wires[index];
        let count = ((batch_records * parts.len()) as u64).min(records - sent);
        // Wait for room in the window before building the request, so that an e2e stamp
        // (and the produce latency, stamped at the push below) starts at the send.
        if load.acks != 0 {
            let mut queue = inflight.queue.lock().expect("inflight lock");
            while queue.len() >= load.inflight {
                let (next, timeout) = inflight
                    .space
                    .wait_timeout(queue, Duration::from_secs(60))
                    .expect("inflight lock");
                queue = next;
                if timeout.timed_out() {
                    return Err(CliError::failure(format!(
                        "no produce response from {} in 60 s",
                        wire.address
                    )));
                }
            }
        }
        let per_partition = (count as usize).div_ceil(parts.len());
        let mut request_parts: Vec<(i32, Bytes)> = Vec::with_capacity(parts.len());
        let mut left = count as usize;
        for p in parts.iter() {
            if left == 0 {
                break;
            }
            let n = per_partition.min(left);
            left -= n;
            let mut records = if n != batch_records {
                batch_for(n, load.record_bytes, e2e.then(now_micros))
            } else if e2e {
                stamped(&template, now_micros())
            } else {
                template.clone()
            };
            if let Some((producer_id, epoch)) = *producer {
                let sequence = sequences.entry(*p).or_insert(0);
                let mut owned = records.to_vec();
                build::set_producer(&mut owned, producer_id, epoch, *sequence);
                *sequence = sequence.wrapping_add(n as i32) & i32::MAX;
                records = Bytes::from(owned);
            }
            request_parts.push((*p, records));
        }
        if load.acks != 0 {
            // This thread alone adds to the queue, so the space stays until the push below.
            inflight.queue.lock().expect("inflight lock").push_back((Instant::now(), count));
        }
        wire.send_produce(load.acks, PRODUCE_TIMEOUT_MS, &load.topic, &request_parts)?;
        sent += count;
        if load.acks == 0 {
            stats.complete(count, count * load.record_bytes as u64);
        }
    }
    // Wait for the last answers, then unblock the readers.
    for (wire, _, inflight, _, _) in &wires {
        let mut queue = inflight.queue.lock().expect("inflight lock");
        while !queue.is_empty() {
            let (next, timeout) =
                inflight.space.wait_timeout(queue, Duration::from_secs(60)).expect("inflight lock");
            queue = next;
            if timeout.timed_out() {
                break;
            }
        }
        let _ = wire.stream.shutdown(std::net::Shutdown::Read);
    }
    for reader in readers {
        reader.join().map_err(|_| CliError::failure("a reader thread panicked"))??;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn consume_worker(
    load: &LoadArgs,
    mut positions: BTreeMap<i32, i64>,
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    target: u64,
    e2e: bool,
    stats: &Stats,
    producers_done: &AtomicBool,
) -> Result<(), CliError> {
    let Some(&first) = positions.keys().next() else {
        return Ok(());
    };
    let leader = leaders[&first];
    let address = addresses
        .get(&leader)
        .ok_or_else(|| CliError::failure(format!("no address for broker {leader}")))?;
    let mut wire = Wire::connect(address)?;
    let mut idle_rounds = 0u32;
    while stats.records.load(Ordering::Relaxed) < target {
        let mut topic = FetchTopic::default();
        topic.topic = TopicName(load.topic.clone().into());
        for (p, offset) in &positions {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *offset;
            fp.partition_max_bytes = 8 * 1024 * 1024;
            fp.log_start_offset = -1;
            topic.partitions.push(fp);
        }
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = 100;
        request.min_bytes = 1;
        request.max_bytes = 64 * 1024 * 1024;
        request.session_epoch = -1;
        request.topics = vec![topic];
        let sent_at = Instant::now();
        wire.send(ApiKey::Fetch, FETCH_VERSION, &request)?;
        let response: FetchResponse = wire.receive(ApiKey::Fetch, FETCH_VERSION)?;
        let mut got = 0u64;
        let mut at_end = true;
        for t in &response.responses {
            for data in &t.partitions {
                if data.error_code != 0 {
                    return Err(CliError::failure(format!(
                        "fetch partition {}: {}",
                        data.partition_index,
                        error_name(data.error_code)
                    )));
                }
                let Some(position) = positions.get_mut(&data.partition_index) else { continue };
                let Some(records) = &data.records else { continue };
                let mut buf: &[u8] = records;
                while let Some(header) = fjord_storage::batch::BatchHeader::view(buf) {
                    let size = header.size() as usize;
                    if size > buf.len() {
                        break;
                    }
                    let count = header.records_count.get().max(0) as u64;
                    let skip = (*position - header.base_offset.get()).clamp(0, count as i64) as u64;
                    let fresh = count - skip;
                    if e2e && fresh > 0 {
                        if let Some(sent) = first_value_stamp(&buf[..size]) {
                            stats.record_latency(now_micros().saturating_sub(sent), fresh);
                        }
                    }
                    got += fresh;
                    *position = header.last_offset() + 1;
                    buf = &buf[size..];
                }
                at_end &= *position >= data.high_watermark;
            }
        }
        if !e2e && got > 0 {
            stats.record_latency(sent_at.elapsed().as_micros() as u64, 1);
        }
        if got > 0 {
            stats.complete(got, got * load.record_bytes as u64);
        }
        // Stop at the end of the data even short of the target, once nothing more comes.
        if got == 0 && at_end && producers_done.load(Ordering::Relaxed) {
            idle_rounds += 1;
            if idle_rounds >= 20 {
                break;
            }
        } else {
            idle_rounds = 0;
        }
    }
    Ok(())
}

/// A copy of `template` (from `batch_for`) for e2e: the send time `micros` in its first
/// record's value, the batch timestamps now, and the CRC recomputed. The consumer reads the
/// stamp of the first record only, so a stamped batch costs one copy and one CRC instead of
/// a batch built record by record (which, at a few million records per second, took a fifth
/// of this 2-core machine from the broker being measured).
fn stamped(template: &[u8], micros: u64) -> Bytes {
    let mut bytes = template.to_vec();
    // `validate` keeps --record-bytes at 8 or more.
    let at = first_value_at(&bytes).expect("bench batches have values of at least 8 bytes");
    bytes[at..at + 8].copy_from_slice(&micros.to_be_bytes());
    let millis = (micros / 1000) as i64;
    build::set_timestamps(&mut bytes, millis, millis);
    build::reseal(&mut bytes);
    Bytes::from(bytes)
}

/// The send time in the first record's value of an uncompressed batch (e2e records).
fn first_value_stamp(batch: &[u8]) -> Option<u64> {
    let at = first_value_at(batch)?;
    Some(u64::from_be_bytes(batch.get(at..at + 8)?.try_into().ok()?))
}

/// Where the first record's value starts in an uncompressed batch, if it has at least the 8
/// bytes of an e2e stamp.
fn first_value_at(batch: &[u8]) -> Option<usize> {
    use fjord_storage::batch::{read_varint, read_varlong, BATCH_HEADER_BYTES};
    let body = batch.get(BATCH_HEADER_BYTES..)?;
    let (_length, mut p) = read_varint(body)?;
    p += 1; // attributes
    p += read_varlong(body.get(p..)?)?.1; // timestamp delta
    p += read_varint(body.get(p..)?)?.1; // offset delta
    let (key_len, n) = read_varint(body.get(p..)?)?;
    p += n + usize::try_from(key_len.max(0)).ok()?;
    let (value_len, n) = read_varint(body.get(p..)?)?;
    p += n;
    if value_len < 8 || body.len() < p + 8 {
        return None;
    }
    Some(BATCH_HEADER_BYTES + p)
}

/// Draws the progress bar until the workers finish; returns the per-interval samples.
fn progress(
    stats: &Stats,
    target: u64,
    started: Instant,
    quiet: bool,
    handles: &[std::thread::JoinHandle<Result<(), CliError>>],
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut last_records = 0u64;
    let mut last = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let finished = handles.iter().all(|h| h.is_finished());
        if last.elapsed() >= Duration::from_millis(500) || finished {
            let records = stats.records.load(Ordering::Relaxed);
            let interval = last.elapsed().as_secs_f64();
            let rate = (records - last_records) as f64 / interval.max(1e-9);
            let p99 = {
                let mut latency = stats.latency.lock().expect("latency lock");
                let p99 = latency.1.value_at_quantile(0.99);
                latency.1.reset();
                p99
            };
            samples.push((started.elapsed().as_secs_f64(), rate, p99));
            if !quiet {
                let fraction = (records as f64 / target as f64).min(1.0);
                let filled = (fraction * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:>3.0}% {:>10.0} records/s  p99 {:>7} µs ",
                    "=".repeat(filled),
                    " ".repeat(30 - filled),
                    fraction * 100.0,
                    rate,
                    p99
                );
                let _ = std::io::stderr().flush();
            }
            last_records = records;
            last = Instant::now();
        }
        if finished {
            if !quiet {
                eprintln!();
            }
            return samples;
        }
    }
}

/// A two-panel SVG: throughput and p99 latency over time.
fn svg_chart(mode: &str, samples: &[Sample]) -> String {
    let (width, height, pad) = (800.0, 220.0, 50.0);
    let t_max = samples.iter().map(|s| s.0).fold(1e-9, f64::max);
    let rate_max = samples.iter().map(|s| s.1).fold(1.0, f64::max);
    let lat_max = samples.iter().map(|s| s.2 as f64).fold(1.0, f64::max);
    let line = |values: &dyn Fn(&Sample) -> f64, max: f64, top: f64| -> String {
        samples
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    pad + s.0 / t_max * (width - 2.0 * pad),
                    top + height - pad - values(s) / max * (height - 2.0 * pad)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let panel = |top: f64, title: &str, max: f64, points: String, color: &str| {
        format!(
            "<g><rect x=\"{pad}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>\
             <text x=\"{pad}\" y=\"{ty}\" font-size=\"14\">{title} (max {max:.0})</text>\
             <polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{points}\"/></g>",
            y0 = top + pad,
            w = width - 2.0 * pad,
            h = height - 2.0 * pad,
            ty = top + pad - 8.0,
        )
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"sans-serif\">\
         <text x=\"{pad}\" y=\"24\" font-size=\"16\">fjord bench {mode}: {:.1} s</text>{}{}</svg>\n",
        2.0 * height + 20.0,
        t_max,
        panel(20.0, "records/s", rate_max, line(&|s| s.1, rate_max, 20.0), "#1f77b4"),
        panel(20.0 + height, "p99 latency µs", lat_max, line(&|s| s.2 as f64, lat_max, 20.0 + height), "#d62728"),
    )
}

fn run_baseline(args: BaselineArgs) -> Result<(), CliError> {
    if args.chunk_bytes == 0 || args.chunk_bytes > 64 << 20 || args.bytes == 0 {
        return Err(CliError::usage(
            "--chunk-bytes must be between 1 and 64 MiB and --bytes at least 1",
        ));
    }
    // Loopback TCP: one stream, large writes, a reader that only counts.
    let total = args.bytes;
    let chunk = vec![0x5au8; args.chunk_bytes];
    let send_chunks = |stream: &mut TcpStream| -> std::io::Result<()> {
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n])?;
            sent += n as u64;
        }
        Ok(())
    };
    let loopback = loopback_stream("loopback", total, send_chunks, |_| Ok(()))?;

    // Sequential file writes through Fjord's file layer, without and with fdatasync per chunk.
    // Chunks larger than 256 KiB (the default is 1 MiB) go through io_uring; smaller ones may
    // run inline, as the log's appends do (storage/src/io/inline.rs).
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("fjord-baseline-{}", std::process::id()));
    // The file goes however the baseline ends, an error included.
    let _remove = RemoveOnDrop(path.clone());
    let write = |sync: bool| -> Result<f64, CliError> {
        fjord_storage::io::block_on(async {
            let file = fjord_storage::io::File::open_rw(&path, true)
                .await
                .map_err(|e| CliError::failure(e.to_string()))?;
            file.set_len(0).map_err(|e| CliError::failure(e.to_string()))?;
            let started = Instant::now();
            let mut position = 0u64;
            let mut buf = vec![0x5au8; args.chunk_bytes];
            while position < total {
                let n = (total - position).min(buf.len() as u64) as usize;
                buf.truncate(n);
                let (result, back) = file.write_all_at(buf, position).await;
                buf = back;
                result.map_err(|e| CliError::failure(e.to_string()))?;
                if sync {
                    file.sync_data().await.map_err(|e| CliError::failure(e.to_string()))?;
                }
                position += n as u64;
            }
            let rate = total as f64 / started.elapsed().as_secs_f64();
            file.close().await.map_err(|e| CliError::failure(e.to_string()))?;
            Ok(rate)
        })
    };
    // The first pass fills page-cache pages the machine may not have used for a while; on a
    // VM that returns free memory to its host (free page reporting), each of those costs a
    // host fault, several times the copy itself. It is reported apart: a broker that keeps
    // taking in new data pays it. The second pass, into the pages the first one just freed,
    // is the file write baseline.
    let file_write_first = write(false)?;
    let file_write = write(false)?;
    let file_sync = write(true)?;
    let _ = std::fs::remove_file(&path);

    // The least a broker's produce does with each byte: the same stream, with the reader
    // writing every chunk it reads at the next position of a file (plain pwrite, into the
    // pages the passes above just freed), and nothing else (no request parsing, no CRC).
    let into = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", path.display())))?;
    let mut position = 0u64;
    let into_file = loopback_stream("loopback into a file", total, send_chunks, move |bytes| {
        use std::os::unix::fs::FileExt;
        into.write_all_at(bytes, position)?;
        position += bytes.len() as u64;
        Ok(())
    })?;
    // The least a consume from the page cache does: that file, now cached, sent to the
    // stream with sendfile (no copy on the sending side), to a reader that only counts.
    let from = std::fs::File::open(&path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", path.display())))?;
    // Written back first, so the flusher does not share the measured seconds.
    from.sync_data()
        .map_err(|e| CliError::failure(format!("cannot sync {}: {e}", path.display())))?;
    let chunk_bytes = args.chunk_bytes;
    let from_file = loopback_stream(
        "file to loopback",
        total,
        |stream| send_file(stream, &from, total, chunk_bytes),
        |_| Ok(()),
    )?;
    // The same through user space (pread into a buffer, then write): on loopback the reader
    // copies either way, and page-cache pages reach it as one socket fragment per page, so
    // this copy can outrun sendfile; Fjord splices (no copy on its side), as it must for a
    // network card. Reported so the consume rows can be read against both.
    let copied_file = loopback_stream(
        "file copied to loopback",
        total,
        |stream| copy_file(stream, &from, total, chunk_bytes),
        |_| Ok(()),
    )?;
    drop(from);
    if args.json {
        println!(
            "{{\"mode\":\"baseline\",\"bytes\":{total},\"chunk_bytes\":{},\"loopback_bytes_per_sec\":{loopback:.0},\"file_write_first_bytes_per_sec\":{file_write_first:.0},\"file_write_bytes_per_sec\":{file_write:.0},\"file_write_fdatasync_bytes_per_sec\":{file_sync:.0},\"loopback_into_file_bytes_per_sec\":{into_file:.0},\"file_to_loopback_bytes_per_sec\":{from_file:.0},\"file_copied_to_loopback_bytes_per_sec\":{copied_file:.0}}}",
            args.chunk_bytes
        );
    } else {
        println!("baseline, {} MiB in {} KiB chunks:", total >> 20, args.chunk_bytes >> 10);
        println!("  loopback TCP stream:          {:>8.1} MB/s", loopback / 1e6);
        println!("  loopback into a file:         {:>8.1} MB/s", into_file / 1e6);
        println!("  cached file to loopback:      {:>8.1} MB/s (sendfile)", from_file / 1e6);
        println!("  the same, copied:             {:>8.1} MB/s (pread + write)", copied_file / 1e6);
        println!("  file write, first pass:       {:>8.1} MB/s", file_write_first / 1e6);
        println!("  file write (page cache):      {:>8.1} MB/s", file_write / 1e6);
        println!("  file write + fdatasync/chunk: {:>8.1} MB/s", file_sync / 1e6);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    #[test]
    fn produce_pieces_match_the_codec() {
        let parts = [
            (3, Bytes::from_static(b"first records")),
            (7, Bytes::new()),
            (0, Bytes::from(vec![0x5a; 1000])),
        ];
        for (acks, parts) in [(1, &parts[..]), (-1, &parts[..1]), (0, &parts[..0])] {
            let mut topic = TopicProduceData::default();
            topic.name = TopicName("bench-topic".to_string().into());
            for (index, records) in parts {
                let mut data = PartitionProduceData::default();
                data.index = *index;
                data.records = Some(records.clone());
                topic.partition_data.push(data);
            }
            let mut request = ProduceRequest::default();
            request.acks = acks;
            request.timeout_ms = PRODUCE_TIMEOUT_MS;
            request.topic_data = vec![topic];
            let encoded = crate::protocol::encode_request(
                ApiKey::Produce,
                PRODUCE_VERSION,
                42,
                CLIENT_ID,
                &request,
            )
            .expect("encode");
            let pieces: Vec<u8> =
                produce_pieces(42, acks, PRODUCE_TIMEOUT_MS, "bench-topic", parts).concat();
            assert_eq!(pieces, encoded.to_vec(), "acks {acks}, {} partitions", parts.len());
        }
    }

    #[test]
    fn a_stamped_template_is_a_valid_batch_with_the_stamp_first() {
        use fjord_storage::batch::{validate, BatchHeader, Origin};
        let template = batch_for(100, 100, None);
        let micros = 1_790_000_000_123_456u64;
        let stamped = stamped(&template, micros);
        assert_eq!(stamped.len(), template.len());
        let info = validate(&stamped, 1 << 20, Origin::Client)
            .expect("a stamped batch passes the broker's checks");
        assert_eq!(info.record_count, 100);
        assert_eq!(first_value_stamp(&stamped), Some(micros));
        let header = BatchHeader::view(&stamped).unwrap();
        assert_eq!(
            (header.base_timestamp.get(), header.max_timestamp.get()),
            ((micros / 1000) as i64, (micros / 1000) as i64)
        );
        // The template itself is untouched, and a value too short for a stamp has none.
        assert_eq!(first_value_stamp(&template), Some(u64::from_be_bytes([0x5a; 8])));
        assert_eq!(first_value_at(&batch_for(1, 7, None)), None);
    }
}
