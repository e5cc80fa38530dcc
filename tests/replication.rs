//! Replication and the controller against real clusters: `fjord cluster up` starts three
//! `fjord serve` processes, the tests kill -9 leaders and controllers, freeze followers
//! (SIGSTOP), damage the state file, and check with real clients (confluent-kafka through
//! the python helpers, kcat) and with the files on disk that acknowledged data survives,
//! leaders move fast, divergent tails are cut, and committed group offsets follow the
//! coordinator.
//!
//! Invariants of this harness: every cluster lives in a fresh directory under
//! `std::env::temp_dir()`; a `Cluster` value owns it and, when it drops (also when a test
//! panics), wakes frozen brokers, runs `fjord cluster down`, SIGKILLs whatever still runs,
//! prints the brokers' log tails on failure, and removes the directory (a failed test's is
//! kept when `FJORD_KEEP_TEST_DIRS` is set). Every external command runs under `timeout`; every wait
//! polls the state file or a client with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjord_replication::{ClusterFile, ClusterState, PartitionState};

use crate::support::kafka::kafka_tool_ok;
use crate::support::loop_fs::LoopFs;
use crate::support::wire;
use crate::support::{
    keep_on_failure, parse_messages, python, python_ok, tagged, value_index, wait_until,
    Background, Message, TempDir,
};

/// Longest a `fjord` CLI command may take: `cluster up` waits up to 30 s for its brokers.
const FJORD_SECONDS_MAX: u64 = 60;
/// How often the state file and clients are polled.
const POLL_MS: u64 = 20;
/// The design's promise: a dead leader is replaced within two seconds.
const FAILOVER_MS_MAX: u128 = 2_000;
/// How long a restarted broker may take to be back in every in-sync set.
const ISR_RECOVERY_MAX: Duration = Duration::from_secs(20);
/// How long a new cluster may take to create `__consumer_offsets` and elect its leaders.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Partitions of `__consumer_offsets` (the broker default).
const OFFSETS_PARTITIONS: usize = 8;
/// Brokers per test cluster.
const BROKERS: i32 = 3;
/// Kafka's NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Shards per broker of a test cluster (`Cluster::up`); `Cluster::up_with_shards` picks
/// another count, so clusters run with one shard and with several.
const SHARDS: usize = 2;
/// Lines of each broker log printed when a test fails.
const LOG_TAIL_LINES_MAX: usize = 60;
/// The followers' long-poll wait (`FETCH_WAIT_MS` in src/replication/fetcher.rs): after this long a
/// frozen follower has no fetch left parked on the leader.
const FOLLOWER_FETCH_WAIT_MS: u64 = 500;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir(label: &str) -> PathBuf {
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").subsec_nanos();
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("fjord-repl-{label}-{}-{n}-{nanos}", std::process::id()))
}

/// Runs the fjord binary under `timeout`; panics if it times out.
fn fjord(args: &[&str]) -> Output {
    let output = Command::new("timeout")
        .args(["-k", "5", &FJORD_SECONDS_MAX.to_string()])
        .arg(env!("CARGO_BIN_EXE_fjord"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run fjord");
    if output.status.code() == Some(124) {
        panic!(
            "fjord {args:?} timed out after {FJORD_SECONDS_MAX} s\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// `fjord ARGS` with `input` on its stdin.
fn run_fjord_with_input(args: &[&str], input: &str) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    crate::support::run_with_timeout(
        FJORD_SECONDS_MAX,
        Path::new(env!("CARGO_BIN_EXE_fjord")),
        &args,
        Some(input.as_bytes()),
    )
}

fn fjord_ok(args: &[&str]) -> String {
    let output = fjord(args);
    assert!(
        output.status.success(),
        "fjord {args:?}: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Whether a process runs (a zombie does not), as `fjord cluster` decides it.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Sends `signal` to a broker pid this test started (through `fjord cluster up` or directly).
fn try_signal(pid: i32, signal: libc::c_int) -> std::io::Result<()> {
    // A negative pid fails as 0 does: it names no single process.
    fjord_storage::io::send_signal(u32::try_from(pid).unwrap_or(0), signal)
}

/// [`try_signal`], which must succeed.
fn signal(pid: i32, signal: libc::c_int) {
    try_signal(pid, signal).unwrap_or_else(|e| panic!("{e}"));
}

/// Strips ANSI colour sequences from a log, in case the logger ignores NO_COLOR.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Java's `String.hashCode`, as Kafka uses it to map a group to an offsets partition.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Polls `probe` every `POLL_MS` until it holds or `timeout` passes; returns whether it held.
fn try_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// A three-broker cluster made by `fjord cluster up`, stopped and cleaned up on drop.
struct Cluster {
    dir: PathBuf,
    file: ClusterFile,
    bootstrap: String,
    /// Brokers this test started itself (not through `cluster up`): reaped on drop.
    children: Vec<Child>,
    /// `fjord serve` flags of every broker (`--shards` and any a test adds), also when one
    /// is restarted.
    serve_args: Vec<String>,
    /// The file system the cluster lives on, if a test made one: unmounted after the
    /// cluster is stopped (fields drop after `Drop::drop`).
    fs: Option<LoopFs>,
}

impl Cluster {
    fn up(label: &str) -> Cluster {
        Cluster::up_with_shards(label, SHARDS)
    }

    fn up_with_shards(label: &str, shards: usize) -> Cluster {
        Cluster::up_in(fresh_dir(label), None, &["--shards", &shards.to_string()])
    }

    /// A cluster whose directory (state, logs, every broker's data) is a fresh directory on
    /// `fs`, its brokers started with `serve_args` (which must include `--shards`).
    fn up_on(label: &str, fs: LoopFs, serve_args: &[&str]) -> Cluster {
        let dir = fs.mount().join(label);
        Cluster::up_in(dir, Some(fs), serve_args)
    }

    fn up_in(dir: PathBuf, fs: Option<LoopFs>, serve_args: &[&str]) -> Cluster {
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        let mut cluster = Cluster {
            dir,
            file: ClusterFile {
                replication_factor: 1,
                min_insync_replicas: 1,
                brokers: Vec::new(),
                dir: PathBuf::new(),
            },
            bootstrap: String::new(),
            children: Vec::new(),
            serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
            fs,
        };
        let out = cluster.cluster_up(Some(BROKERS));
        cluster.bootstrap =
            out.trim().lines().last().expect("cluster up prints the bootstrap list").to_string();
        cluster.file = ClusterFile::load(&cluster.dir.join("cluster.toml"))
            .expect("cluster up writes a valid cluster file");
        assert_eq!(cluster.file.brokers.len(), BROKERS as usize);
        assert_eq!(
            cluster.bootstrap.split(',').count(),
            BROKERS as usize,
            "bootstrap {:?}",
            cluster.bootstrap
        );
        cluster.wait_settled();
        cluster
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    fn cluster_up(&self, brokers: Option<i32>) -> String {
        let dir = self.dir_arg();
        let count = brokers.map(|b| b.to_string());
        let mut args = vec!["cluster", "up", "--dir", dir.as_str()];
        if let Some(count) = &count {
            args.extend(["--brokers", count.as_str()]);
        }
        args.push("--");
        args.extend(self.serve_args.iter().map(String::as_str));
        fjord_ok(&args)
    }

    /// `cluster up` again: restarts every broker that is not running.
    fn restart_stopped(&self) {
        let out = self.cluster_up(None);
        assert_eq!(out.trim(), self.bootstrap, "the bootstrap list is stable across restarts");
    }

    fn down(&self) {
        let dir = self.dir_arg();
        fjord_ok(&["cluster", "down", "--dir", &dir]);
    }

    fn address(&self, id: i32) -> String {
        self.file.broker(id).expect("broker in the cluster file").address.clone()
    }

    fn addresses(&self, ids: &[i32]) -> String {
        ids.iter().map(|id| self.address(*id)).collect::<Vec<_>>().join(",")
    }

    fn pid(&self, id: i32) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("broker-{id}.pid"))).ok()?.trim().parse().ok()
    }

    fn running_pid(&self, id: i32) -> i32 {
        let pid = self.pid(id).unwrap_or_else(|| panic!("broker {id} has no pid file"));
        assert!(alive(pid), "broker {id} (pid {pid}) is not running");
        pid
    }

    /// SIGKILL broker `id` and wait until its process is gone.
    fn kill9(&self, id: i32) {
        let pid = self.running_pid(id);
        signal(pid, libc::SIGKILL);
        wait_until(&format!("broker {id} (pid {pid}) to die"), Duration::from_secs(10), || {
            (!alive(pid)).then_some(())
        });
        eprintln!("killed broker {id} (pid {pid}) with SIGKILL");
    }

    fn freeze(&self, id: i32) {
        signal(self.running_pid(id), libc::SIGSTOP);
    }

    fn thaw(&self, id: i32) {
        signal(self.running_pid(id), libc::SIGCONT);
    }

    /// Starts one broker without `cluster up` (which would start every stopped broker), the
    /// way `cluster up` does: its own process group, output appended to its log, a pid file.
    fn start_alone(&mut self, id: i32) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("broker-{id}.log")))
            .expect("open broker log");
        let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .arg("serve")
            .arg("--cluster")
            .arg(self.dir.join("cluster.toml"))
            .arg("--broker-id")
            .arg(id.to_string())
            .args(&self.serve_args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn fjord serve");
        std::fs::write(self.dir.join(format!("broker-{id}.pid")), child.id().to_string())
            .expect("write pid file");
        let pid = child.id() as i32;
        self.children.push(child);
        let address: SocketAddr = self.address(id).parse().expect("address");
        wait_until(&format!("broker {id} to serve on {address}"), Duration::from_secs(30), || {
            assert!(alive(pid), "broker {id} exited at start:\n{}", self.log_tail(id));
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()
        });
    }

    /// The file of the newest state version (`cluster-state/<version>.toml`).
    fn state_path(&self) -> PathBuf {
        let versions = self.dir.join("cluster-state");
        let newest = std::fs::read_dir(&versions)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.len() == 25 && name.ends_with(".toml"))
            .max();
        newest.map_or_else(|| versions.join("none-yet.toml"), |name| versions.join(name))
    }

    /// The newest state, parsed. Versions are created by rename, so a read never sees a torn
    /// file; one that a writer removed between the listing and the read (seven newer ones
    /// were written meanwhile) is listed again.
    fn state(&self) -> ClusterState {
        let mut attempts = 0;
        loop {
            let path = self.state_path();
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return toml::from_str(&text).unwrap_or_else(|e| {
                        panic!("{} does not parse: {e}\n{text}", path.display())
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 10 => {
                    attempts += 1;
                }
                Err(e) => panic!("read {}: {e}", path.display()),
            }
        }
    }

    /// A wire connection to broker `id`.
    fn connect(&self, id: i32) -> wire::Conn {
        wire::Conn::connect(self.address(id).parse().expect("broker address"))
    }

    /// Creates `topic` with one partition, waits until every broker is in its in-sync set,
    /// and returns its leader and a follower.
    fn one_partition_in_sync(&self, topic: &str) -> (i32, i32) {
        self.create_topic(topic, 1, &[]);
        let state = self.wait_state(
            &format!("{topic}-0 to be in sync on every broker"),
            ISR_RECOVERY_MAX,
            |s| partition(s, topic, 0).isr.len() == BROKERS as usize,
        );
        let p = partition(&state, topic, 0);
        (p.leader, *p.isr.iter().find(|b| **b != p.leader).expect("a follower"))
    }

    /// Makes `to` the leader of `topic`-`partition` in the next epoch by writing the state
    /// file directly, as a controller would (the brokers learn it at their next state read).
    fn move_leader(&self, topic: &str, partition: i32, to: i32) -> ClusterState {
        let store = fjord_replication::StateStore::new(&self.dir);
        fjord_storage::io::block_on(store.update(|state| {
            let Some(p) =
                state.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(partition as usize))
            else {
                return Err(format!("{topic}-{partition} is not in the state"));
            };
            p.leader = to;
            p.leader_epoch += 1;
            Ok(true)
        }))
        .expect("write the state file")
        .unwrap_or_else(|reason| panic!("{reason}"))
    }

    /// Polls the state file until `ok` holds; panics with the last state after `timeout`.
    fn wait_state(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl FnMut(&ClusterState) -> bool,
    ) -> ClusterState {
        self.try_wait_state(timeout, ok).unwrap_or_else(|state| {
            panic!(
                "timed out after {timeout:?} waiting for {what}; state file now:\n{}",
                toml::to_string(&state).unwrap_or_default()
            )
        })
    }

    /// Like `wait_state`, but returns the last state seen instead of panicking. A missing
    /// file (a new cluster before its first write) counts as an empty state.
    fn try_wait_state(
        &self,
        timeout: Duration,
        mut ok: impl FnMut(&ClusterState) -> bool,
    ) -> Result<ClusterState, ClusterState> {
        let deadline = Instant::now() + timeout;
        loop {
            let state =
                if self.state_path().exists() { self.state() } else { ClusterState::default() };
            if ok(&state) {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                return Err(state);
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Waits until `__consumer_offsets` exists and every partition has a leader and every
    /// broker in its in-sync set.
    fn wait_settled(&self) -> ClusterState {
        self.wait_state("__consumer_offsets and full in-sync sets", SETTLE_MAX, |s| {
            s.topics
                .get("__consumer_offsets")
                .is_some_and(|t| t.partitions.len() == OFFSETS_PARTITIONS)
                && all_in_sync(s)
        })
    }

    fn wait_all_in_sync(&self, why: &str) -> ClusterState {
        self.wait_state(
            &format!("every broker back in every in-sync set ({why})"),
            ISR_RECOVERY_MAX,
            all_in_sync,
        )
    }

    fn create_topic(&self, name: &str, partitions: i32, configs: &[&str]) {
        let partitions = partitions.to_string();
        let mut args = vec![
            "topic",
            "create",
            name,
            "-b",
            self.bootstrap.as_str(),
            "-p",
            partitions.as_str(),
            "-r",
            "3",
        ];
        for config in configs {
            args.extend(["-c", *config]);
        }
        let out = fjord_ok(&args);
        assert!(out.contains(&format!("created topic {name}")), "{out}");
        self.wait_state(
            &format!("topic {name} in the state with leaders"),
            Duration::from_secs(10),
            |s| s.topics.get(name).is_some_and(|t| t.partitions.iter().all(|p| p.leader >= 0)),
        );
    }

    /// Partition index -> leader, from `fjord topic describe` (a Metadata request).
    fn describe_leaders(&self, topic: &str) -> Option<BTreeMap<i32, i32>> {
        let output = fjord(&["topic", "describe", topic, "-b", &self.bootstrap]);
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let leaders = text
            .lines()
            .skip(2)
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
            })
            .collect();
        Some(leaders)
    }

    fn partition_dir(&self, id: i32, topic: &str, partition: i32) -> PathBuf {
        self.file.data_dir(id).expect("broker data dir").join(format!("{topic}-{partition}"))
    }

    /// The concatenated `.log` segment files of one replica, in offset order.
    fn log_bytes(&self, id: i32, topic: &str, partition: i32) -> Vec<u8> {
        let dir = self.partition_dir(id, topic, partition);
        crate::support::segment_logs(&dir)
            .iter()
            .flat_map(|path| {
                std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            })
            .collect()
    }

    /// `log_bytes`, or `None` once the partition's directory is gone (or going: a deleted
    /// partition's directory is renamed away at once and removed in the background).
    fn log_bytes_if_present(&self, id: i32, topic: &str, partition: i32) -> Option<Vec<u8>> {
        let dir = self.partition_dir(id, topic, partition);
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        let mut bytes = Vec::new();
        for path in logs {
            bytes.extend(std::fs::read(path).ok()?);
        }
        Some(bytes)
    }

    fn log(&self, id: i32) -> String {
        plain(
            &std::fs::read_to_string(self.dir.join(format!("broker-{id}.log"))).unwrap_or_default(),
        )
    }

    /// The last lines of a broker's log, a run of lines with the same message (a warning per
    /// partition per retry) shown once with its count, so the tail stays readable.
    fn log_tail(&self, id: i32) -> String {
        let log = self.log(id);
        let mut kept: Vec<(&str, usize)> = Vec::new();
        for line in log.lines() {
            match kept.last_mut() {
                Some((last, repeats)) if log_message(last) == log_message(line) => *repeats += 1,
                _ => kept.push((line, 1)),
            }
        }
        kept[kept.len().saturating_sub(LOG_TAIL_LINES_MAX)..]
            .iter()
            .map(|(line, repeats)| {
                if *repeats > 1 {
                    format!("{line}   [and {} more like it]", repeats - 1)
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A log line without its timestamp and its `key=value` fields, e.g.
/// `WARN fjord::broker::cluster: cannot change the in-sync set`.
fn log_message(line: &str) -> &str {
    let rest = line.split_once(' ').map_or(line, |(_, rest)| rest);
    match rest.find('=') {
        Some(eq) => rest[..eq].rsplit_once(' ').map_or(rest, |(message, _)| message),
        None => rest,
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pids: Vec<i32> =
            (0..BROKERS).filter_map(|id| self.pid(id)).filter(|pid| alive(*pid)).collect();
        for pid in &pids {
            // A frozen broker would only act on `cluster down`'s SIGTERM once continued. (A
            // broker that exited meanwhile needs no signal: errors are ignored here.)
            let _ = try_signal(*pid, libc::SIGCONT);
        }
        if self.dir.join("cluster.toml").exists() {
            let dir = self.dir_arg();
            let _ = fjord(&["cluster", "down", "--dir", &dir]);
        }
        for pid in pids {
            if alive(pid) {
                let _ = try_signal(pid, libc::SIGKILL);
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let keep = std::thread::panicking() && keep_on_failure();
        if std::thread::panicking() {
            for id in 0..BROKERS {
                eprintln!(
                    "--- {} broker-{id}.log (tail) ---\n{}",
                    self.dir.display(),
                    self.log_tail(id)
                );
            }
            if keep {
                eprintln!("cluster directory kept for inspection: {}", self.dir.display());
            } else {
                eprintln!(
                    "(set FJORD_KEEP_TEST_DIRS=1 to keep the cluster directory of a failed test)"
                );
            }
        }
        if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn all_in_sync(state: &ClusterState) -> bool {
    let everyone: BTreeSet<i32> = (0..BROKERS).collect();
    !state.topics.is_empty()
        && state
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .all(|p| p.leader >= 0 && p.isr.iter().copied().collect::<BTreeSet<i32>>() == everyone)
}

/// The partitions whose in-sync set lacks a broker, e.g. `orders-1 [0, 2]`.
fn not_in_sync(state: &ClusterState) -> String {
    let lagging: Vec<String> = state
        .topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.isr.len() < BROKERS as usize)
                .map(move |(i, p)| format!("{name}-{i} leader {} isr {:?}", p.leader, p.isr))
        })
        .collect();
    format!(
        "{} partitions (state version {}): {}",
        lagging.len(),
        state.version,
        lagging.join(", ")
    )
}

fn partition<'a>(state: &'a ClusterState, topic: &str, index: i32) -> &'a PartitionState {
    state.partition(topic, index).unwrap_or_else(|| panic!("{topic}-{index} is not in the state"))
}

/// (topic, partition) of every partition broker `id` leads.
fn led_by(state: &ClusterState, id: i32) -> Vec<(String, i32, i32)> {
    state
        .topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.leader == id)
                .map(move |(i, p)| (name.clone(), i as i32, p.leader_epoch))
        })
        .collect()
}

/// Whether every partition in `led` has a live leader other than `dead` and a newer epoch.
fn reelected(state: &ClusterState, led: &[(String, i32, i32)], dead: i32) -> bool {
    led.iter().all(|(topic, index, epoch)| {
        state
            .partition(topic, *index)
            .is_some_and(|p| p.leader >= 0 && p.leader != dead && p.leader_epoch > *epoch)
    })
}

/// Produces `count` generated messages (`v<start>-` ...) to one partition with ck.py and
/// returns how many were acknowledged.
fn produce(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    start: u64,
    count: u64,
    acks: &str,
) -> usize {
    let (start, count, partition) = (start.to_string(), count.to_string(), partition.to_string());
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--start",
            &start,
            "--count",
            &count,
            "--partition",
            &partition,
            "--acks",
            acks,
            "--message-timeout-ms",
            "15000",
            "--flush-timeout-s",
            "20",
            bootstrap,
            topic,
        ],
    );
    tagged(&out, "ack").len()
}

fn consume(bootstrap: &str, topic: &str) -> Vec<Message> {
    parse_messages(&python_ok("ck.py", &["consume", "--timeout-s", "60", bootstrap, topic]))
}

fn sorted(mut values: Vec<u64>) -> Vec<u64> {
    values.sort_unstable();
    values
}

fn value_indexes(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| value_index(m.value.as_deref().expect("a value"))).collect()
}

/// (base offset, leader epoch, next offset) of every record batch in a replica's segment
/// bytes. Batch header (big-endian): base offset i64 | length i32 | leader epoch i32 |
/// magic i8 | crc u32 | attributes i16 | last offset delta i32 | ...
fn batches(bytes: &[u8]) -> Vec<(i64, i32, i64)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 27 <= bytes.len() {
        let base = i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let epoch = i32::from_be_bytes(bytes[at + 12..at + 16].try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(bytes[at + 23..at + 27].try_into().expect("4 bytes"));
        assert!(length > 0, "batch length {length} at position {at}");
        out.push((base, epoch, base + i64::from(delta) + 1));
        at += 12 + length as usize;
    }
    out
}

/// The log end offset of a replica's segment bytes.
fn log_end(bytes: &[u8]) -> i64 {
    batches(bytes).last().map_or(0, |b| b.2)
}

// ---------------------------------------------------------------------------------------

/// One acknowledged or failed delivery from replication_producer.py's acks file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Ack { partition: i32, offset: i64, key: String, seq: u64 },
    Err { key: String, seq: u64, error: String },
}

fn read_deliveries(path: &Path) -> Vec<Delivery> {
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        // While the producer runs, its last line may be cut short: only the counts taken
        // then see it, the final check reads a closed file.
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["ack", p, o, k, s] => Some(Delivery::Ack {
                    partition: p.parse().ok()?,
                    offset: o.parse().ok()?,
                    key: k.to_string(),
                    seq: s.parse().ok()?,
                }),
                ["err", k, s, e] => Some(Delivery::Err {
                    key: k.to_string(),
                    seq: s.parse().ok()?,
                    error: e.to_string(),
                }),
                _ => None,
            }
        })
        .collect()
}

fn ack_count(path: &Path) -> usize {
    read_deliveries(path).iter().filter(|d| matches!(d, Delivery::Ack { .. })).count()
}

fn wait_for_acks(path: &Path, more_than: usize, why: &str) -> usize {
    wait_until(
        &format!("more than {more_than} acknowledged messages ({why})"),
        Duration::from_secs(30),
        || {
            let n = ack_count(path);
            (n > more_than).then_some(n)
        },
    )
}

/// Records a broken promise that does not stop the test (printed at once, so it shows even
/// if a later step fails hard).
fn problem(problems: &mut Vec<String>, text: String) {
    eprintln!("PROBLEM: {text}");
    problems.push(text);
}

/// replication_producer.py writing to `topic` in the background (idempotent, keyed, acks=all,
/// 24 keys) and recording every delivery in `acks_path`, for `check_deliveries`.
struct VerifiedProducer {
    _work: TempDir,
    topic: String,
    acks_path: PathBuf,
    stop_path: PathBuf,
    process: Background,
}

impl VerifiedProducer {
    fn start(cluster: &Cluster, topic: &str, max_s: u64) -> VerifiedProducer {
        let work = TempDir::new("verified-producer");
        let acks_path = work.path().join("acks");
        let stop_path = work.path().join("stop");
        let (acks_arg, stop_arg) =
            (acks_path.display().to_string(), stop_path.display().to_string());
        let max_s_arg = max_s.to_string();
        let process = Background::spawn_for(
            "replication_producer.py",
            &[
                &cluster.bootstrap,
                topic,
                "--acks-file",
                &acks_arg,
                "--stop-file",
                &stop_arg,
                "--keys",
                "24",
                "--max-s",
                &max_s_arg,
            ],
            max_s + CLIENT_SLACK_S,
        );
        VerifiedProducer { _work: work, topic: topic.to_string(), acks_path, stop_path, process }
    }

    /// Stops the producer and checks its deliveries against the topic (`check_deliveries`);
    /// returns how many acknowledged messages were checked.
    fn stop_and_check(self, cluster: &Cluster, victims: &[i32]) -> usize {
        self.stop_and_check_placed(cluster, victims, KeyPlacement::Fixed)
    }

    fn stop_and_check_placed(
        self,
        cluster: &Cluster,
        victims: &[i32],
        placement: KeyPlacement,
    ) -> usize {
        std::fs::write(&self.stop_path, b"stop").expect("write the stop file");
        let (status, out, stderr) = self.process.finish();
        assert!(status.success(), "producer: {status}\n{out:?}\n{stderr}");
        let summary = out
            .iter()
            .find(|l| l.starts_with("summary\t"))
            .unwrap_or_else(|| panic!("no summary from the producer: {out:?}\n{stderr}"));
        eprintln!("producer {summary}");
        let run = ProducerRun { acks_path: &self.acks_path, summary, stderr: &stderr };
        check_deliveries(cluster, &self.topic, &run, victims, placement)
    }
}

/// What a finished replication_producer.py left: its deliveries, summary line and stderr.
struct ProducerRun<'a> {
    acks_path: &'a Path,
    summary: &'a str,
    stderr: &'a str,
}

/// Where one key's messages may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPlacement {
    /// In one partition for the whole run.
    Fixed,
    /// Partitions were added during the run: in one partition, then, from the moment the
    /// producer learned the new count, maybe in another (every message in the first
    /// precedes every message in the second).
    MovesOnce,
}

/// Checks what replication_producer.py wrote to `acks_path` against everything in `topic`,
/// read back from the beginning: per key one partition and strictly increasing sequence
/// numbers (no duplicate, nothing reordered); every acknowledged message present once, at
/// the offset it was acknowledged at; no failed delivery; no fatal producer error. Returns
/// the number of acknowledged messages.
fn check_deliveries(
    cluster: &Cluster,
    topic: &str,
    run: &ProducerRun,
    victims: &[i32],
    placement: KeyPlacement,
) -> usize {
    let ProducerRun { acks_path, summary, stderr } = *run;
    let deliveries = read_deliveries(acks_path);
    let acks: Vec<(i32, i64, String, u64)> = deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Ack { partition, offset, key, seq } => {
                Some((*partition, *offset, key.clone(), *seq))
            }
            Delivery::Err { .. } => None,
        })
        .collect();
    let failed: Vec<String> = deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Err { key, seq, error } => Some(format!("{key}:{seq}: {error}")),
            Delivery::Ack { .. } => None,
        })
        .collect();

    // Everything in the topic, read back from the beginning of every partition.
    let messages = consume(&cluster.bootstrap, topic);
    let mut at: BTreeMap<(i32, i64), (String, u64)> = BTreeMap::new();
    let mut per_key: BTreeMap<String, Vec<(i32, i64, u64)>> = BTreeMap::new();
    for m in &messages {
        let key = String::from_utf8(m.key.clone().expect("keyed")).expect("UTF-8 key");
        let value = String::from_utf8(m.value.clone().expect("a value")).expect("UTF-8 value");
        let mut fields = value.split(':');
        assert_eq!(
            fields.next(),
            Some(key.as_str()),
            "value {value:?} at {}:{} under key {key}",
            m.partition,
            m.offset
        );
        let seq: u64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no sequence in {value:?}"));
        assert!(
            at.insert((m.partition, m.offset), (key.clone(), seq)).is_none(),
            "offset {}:{} read twice",
            m.partition,
            m.offset
        );
        per_key.entry(key).or_default().push((m.partition, m.offset, seq));
    }
    // Per key: one partition (or one after the other), sequence numbers strictly increasing
    // with the offset (no duplicate, nothing out of order).
    for (key, list) in &mut per_key {
        list.sort();
        let mut ranges: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
        for (partition, _, seq) in list.iter() {
            let range = ranges.entry(*partition).or_insert((*seq, *seq));
            *range = (range.0.min(*seq), range.1.max(*seq));
        }
        let mut by_first: Vec<(u64, u64)> = ranges.values().copied().collect();
        by_first.sort_unstable();
        let moves_allowed = if placement == KeyPlacement::MovesOnce { 1 } else { 0 };
        assert!(
            by_first.len() <= 1 + moves_allowed
                && by_first.windows(2).all(|pair| pair[0].1 < pair[1].0),
            "key {key} is in partitions {ranges:?} (partition -> first and last sequence), \
             placement {placement:?}"
        );
        for pair in list.windows(2).filter(|pair| pair[0].0 == pair[1].0) {
            assert!(
                pair[1].2 > pair[0].2,
                "key {key}: sequence {} at offset {} follows sequence {} at offset {} (duplicate or reordered)",
                pair[1].2,
                pair[1].1,
                pair[0].2,
                pair[0].1
            );
        }
    }
    // Every acknowledged message is there, exactly once, at the offset it was acknowledged at.
    let mut missing = Vec::new();
    let mut misplaced = Vec::new();
    let present: BTreeSet<(String, u64)> = at.values().cloned().collect();
    for (partition, offset, key, seq) in &acks {
        if !present.contains(&(key.clone(), *seq)) {
            missing.push(format!("{key}:{seq} (acked at {partition}:{offset})"));
        } else if *offset >= 0 && at.get(&(*partition, *offset)) != Some(&(key.clone(), *seq)) {
            misplaced.push(format!(
                "{key}:{seq} acked at {partition}:{offset}, found there: {:?}",
                at.get(&(*partition, *offset))
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing after the failovers (victims {victims:?}); first: {:?}",
        missing.len(),
        acks.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        misplaced.is_empty(),
        "{} acknowledged offsets hold another message; first: {:?}",
        misplaced.len(),
        &misplaced[..misplaced.len().min(20)]
    );
    assert!(
        acks.len() >= 1000,
        "too few acknowledged messages for a meaningful test: {}",
        acks.len()
    );
    // With idempotence and a 60 s message timeout, no delivery should fail at all.
    assert!(
        failed.is_empty(),
        "{} deliveries failed; first: {:?}\nproducer stderr:\n{stderr}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    // summary <sent> <acked> <failed> <fatal> <system-errors>
    assert_eq!(
        summary.split('\t').nth(4),
        Some("-"),
        "the producer hit a fatal error: {summary}\n{stderr}"
    );
    eprintln!(
        "checked {} acknowledged messages, {} in the topic, victims {victims:?}",
        acks.len(),
        messages.len()
    );
    acks.len()
}

#[test]
fn failover_keeps_every_acknowledged_message() {
    let cluster = Cluster::up("failover");
    let topic = "orders";
    cluster.create_topic(topic, 4, &[]);
    let producer = VerifiedProducer::start(&cluster, topic, 90);
    let acks_path = producer.acks_path.clone();
    let started = Instant::now();
    let mut acked = wait_for_acks(&acks_path, 200, "before the first kill");
    let mut victims = Vec::new();
    let mut controller_killed = false;
    // Broken promises that do not stop the test: it goes on to check the data, and fails on
    // these at the end.
    let mut problems: Vec<String> = Vec::new();
    // Four kills: the leader of partition 0, the controller, the leader of partition 0 twice
    // more (the controller kill may hit the leader too; it must hit the controller).
    for round in 0..4 {
        // Partition 0 needs a live in-sync follower to fail over to.
        let before = cluster.wait_state(
            &format!("round {round}: {topic}-0 to have an in-sync follower"),
            ISR_RECOVERY_MAX,
            |s| partition(s, topic, 0).isr.len() >= 2,
        );
        let p0 = partition(&before, topic, 0).clone();
        let victim = if round == 1 { before.controller } else { p0.leader };
        assert!(victim >= 0, "round {round}: no victim in {before:?}");
        controller_killed |= victim == before.controller;
        // Partitions the victim leads alone go offline (correct); the others fail over.
        let led: Vec<(String, i32, i32)> = led_by(&before, victim)
            .into_iter()
            .filter(|(t, i, _)| partition(&before, t, *i).isr.len() >= 2)
            .collect();
        cluster.kill9(victim);
        let killed_at = Instant::now();
        // Slower than the promised two seconds is recorded; not at all within 30 s fails now.
        let after = cluster.wait_state(
            &format!("round {round}: new leaders for the partitions broker {victim} led"),
            Duration::from_secs(30),
            |s| reelected(s, &led, victim),
        );
        let took = killed_at.elapsed();
        eprintln!("round {round}: killed broker {victim} (controller was {}), re-elected {} partitions in {took:?}", before.controller, led.len());
        if took.as_millis() >= FAILOVER_MS_MAX {
            problem(
                &mut problems,
                format!("round {round}: re-electing the {} partitions broker {victim} led took {took:?}, more than {FAILOVER_MS_MAX} ms", led.len()),
            );
        }
        if round == 0 {
            assert_ne!(partition(&after, topic, 0).leader, p0.leader);
            // Clients see it too: Metadata names another leader for partition 0.
            let seen = wait_until(
                "Metadata to show a new leader for partition 0",
                Duration::from_secs(10),
                || {
                    cluster
                        .describe_leaders(topic)
                        .and_then(|l| l.get(&0).copied())
                        .filter(|l| *l >= 0 && *l != p0.leader)
                },
            );
            eprintln!("round 0: Metadata shows leader {seen} for {topic}-0 (was {})", p0.leader);
        }
        if round == 1 {
            let new_controller = wait_until(
                "another broker to take the controller duty",
                Duration::from_secs(10),
                || {
                    let c = cluster.state().controller;
                    (c >= 0 && c != victim).then_some(c)
                },
            );
            eprintln!("round 1: broker {new_controller} is the controller now");
        }
        // The producer keeps getting acknowledgements while the victim is down.
        acked =
            wait_for_acks(&acks_path, acked + 100, &format!("round {round}, broker {victim} down"));
        cluster.restart_stopped();
        // Once the in-sync sets failed to recover, later rounds do not wait as long again.
        let wait = if problems.iter().any(|p| p.contains("in-sync")) {
            Duration::from_secs(5)
        } else {
            ISR_RECOVERY_MAX
        };
        let restarted = Instant::now();
        match cluster.try_wait_state(wait, all_in_sync) {
            Ok(_) => eprintln!("round {round}: every broker back in every in-sync set {:?} after the restart", restarted.elapsed()),
            Err(state) => problem(
                &mut problems,
                format!("round {round}: {wait:?} after restarting broker {victim}, not every broker is in every in-sync set: {}", not_in_sync(&state)),
            ),
        }
        victims.push(victim);
    }
    assert!(controller_killed, "no kill hit the controller: victims {victims:?}");
    acked = wait_for_acks(&acks_path, acked + 200, "after the last restart");
    let acks = producer.stop_and_check(&cluster, &victims);
    eprintln!("producer ran {:?}, at least {acked} acks during the kills", started.elapsed());
    // At the end every broker is back in the in-sync set of every partition.
    if let Err(state) = cluster.try_wait_state(ISR_RECOVERY_MAX, all_in_sync) {
        problem(&mut problems, format!("at the end, {ISR_RECOVERY_MAX:?} after the last restart and the producer's end: not in sync: {}", not_in_sync(&state)));
    }
    assert!(
        problems.is_empty(),
        "the data survived ({acks} acknowledged messages checked), but:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_new_leader_takes_produce_and_list_offsets_requests_before_its_next_state_poll() {
    // Clients learn a new leader from any broker's Metadata, so the first produce can reach
    // it before its own state poll (every 100 ms) has told it. It must read the state then
    // rather than refuse: with an idempotent producer the refused request's successor,
    // already in flight, arrives with a sequence gap, and librdkafka renumbers every
    // unacknowledged message under a new epoch, duplicating what the old leader had
    // written (seen in failover_keeps_every_acknowledged_message).
    let cluster = Cluster::up("eager-leader");
    let (old_leader, new_leader) = cluster.one_partition_in_sync("eager");
    let mut conn = cluster.connect(new_leader);
    let batch =
        wire::record_batch(&[(None, b"first".as_slice())], 1_700_000_000_000, wire::NO_PRODUCER);
    // Moved by hand, as a controller would: the new leader learns it only from the file.
    let moved = cluster.move_leader("eager", 0, new_leader);
    // At once, well inside the new leader's 100 ms poll interval.
    let (error, base_offset) = wire::produce(&mut conn, 1, "eager", 0, &batch);
    assert_eq!(
        (error, base_offset),
        (0, 0),
        "produce to broker {new_leader} right after state version {} made it the leader",
        moved.version
    );
    // The same for ListOffsets, which librdkafka's watermark query does not retry on a
    // refusal: moved once more, to the third broker, and asked there at once.
    let third =
        (0..BROKERS).find(|id| *id != old_leader && *id != new_leader).expect("a third broker");
    let mut conn = cluster.connect(third);
    let moved = cluster.move_leader("eager", 0, third);
    let (error, log_start) = wire::list_offset(&mut conn, 2, "eager", 0, -2);
    assert_eq!(
        (error, log_start),
        (0, 0),
        "ListOffsets (earliest) at broker {third} right after state version {} made it the leader",
        moved.version
    );
    // The leader epochs of the answers: the current one for the latest offset, the one the
    // record was written in for the earliest (consumers check their position against them
    // with OffsetForLeaderEpoch; a wrong one makes them see truncation and reset).
    let now = partition(&moved, "eager", 0).leader_epoch;
    let (error, _, latest_epoch) = wire::list_offset_with_epoch(&mut conn, 3, "eager", 0, -1);
    assert_eq!((error, latest_epoch), (0, now), "ListOffsets v4 (latest) epoch after two moves");
    let (error, offset, earliest_epoch) =
        wire::list_offset_with_epoch(&mut conn, 4, "eager", 0, -2);
    assert_eq!(
        (error, offset, earliest_epoch),
        (0, 0, now - 1),
        "ListOffsets v4 (earliest): the epoch offset 0 was written in"
    );
}

#[test]
fn a_sequence_gap_right_after_a_failover_is_retried_not_refused() {
    // An idempotent producer's batch that skips ahead right after a leadership change most
    // likely overtook its predecessor (still in flight to, or refused by, a broker the client
    // took for the leader). OUT_OF_ORDER_SEQUENCE_NUMBER would make librdkafka renumber
    // every unacknowledged message under a new epoch, duplicating those already written in
    // other partitions (seen in failover_keeps_every_acknowledged_message); a retriable
    // error lets it send both again in order.
    let cluster = Cluster::up("settling-leader");
    let (old_leader, new_leader) = cluster.one_partition_in_sync("settle");
    let mut to_old = cluster.connect(old_leader);
    let (error, producer_id, epoch) = wire::init_producer_id(&mut to_old, 1);
    assert_eq!(error, 0, "InitProducerId");
    let sequenced = |first: i32| {
        wire::record_batch(
            &[(None, format!("seq {first}").as_bytes())],
            1_700_000_000_000,
            wire::Producer { id: producer_id, epoch, base_sequence: first },
        )
    };
    // Sequence 0 on every replica (acks=all), so the new leader knows the producer.
    assert_eq!(
        wire::produce(&mut to_old, 2, "settle", 0, &sequenced(0)),
        (0, 0),
        "first batch at the old leader"
    );
    cluster.move_leader("settle", 0, new_leader);
    let mut to_new = cluster.connect(new_leader);
    let (error, _) = wire::produce(&mut to_new, 3, "settle", 0, &sequenced(2));
    assert_eq!(error, 6, "a gap (sequence 2 after 0) right after the failover: NOT_LEADER_OR_FOLLOWER, to be retried, not OUT_OF_ORDER_SEQUENCE_NUMBER (45)");
    // The predecessor arrives, then the retried batch: both in order, nothing renumbered.
    assert_eq!(
        wire::produce(&mut to_new, 4, "settle", 0, &sequenced(1)),
        (0, 1),
        "the batch the gap skipped"
    );
    assert_eq!(
        wire::produce(&mut to_new, 5, "settle", 0, &sequenced(2)),
        (0, 2),
        "the retried batch"
    );
}

#[test]
fn every_replica_checkpoints_its_high_watermark_and_a_killed_one_restarts_with_it() {
    // Every broker saves the high watermarks that moved every 5 s, so one restarted after a
    // SIGKILL (no clean close) opens with the committed end: as a leader it answers
    // ListOffsets(latest) with it at once rather than with its log start until its
    // followers fetch (a group starting then with auto.offset.reset=latest would read
    // everything again). The open logs what it restored.
    let cluster = Cluster::up("hw-checkpoint");
    let (leader, follower) = cluster.one_partition_in_sync("saved");
    let mut conn = cluster.connect(leader);
    const RECORDS: i64 = 20;
    for i in 0..RECORDS {
        let batch = wire::record_batch(
            &[(None, format!("r{i}").as_bytes())],
            1_700_000_000_000,
            wire::NO_PRODUCER,
        );
        assert_eq!(
            wire::produce(&mut conn, i as i32 + 1, "saved", 0, &batch),
            (0, i),
            "acks=all produce of record {i}"
        );
    }
    for id in partition(&cluster.state(), "saved", 0).replicas.clone() {
        let file = cluster.partition_dir(id, "saved", 0).join("high-watermark");
        wait_until(
            &format!("broker {id} to checkpoint the high watermark {RECORDS}"),
            Duration::from_secs(20),
            || {
                (std::fs::read_to_string(&file).ok()?.trim().parse::<i64>().ok()? == RECORDS)
                    .then_some(())
            },
        );
    }
    let restored = |id: i32| {
        cluster
            .log(id)
            .lines()
            .filter(|line| {
                log_message(line).trim_start()
                    == "INFO fjord::partition: restored the saved high watermark"
                    && line.contains("partition=saved-0")
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        restored(follower).is_empty(),
        "broker {follower} restored a high watermark before any restart: {:?}",
        restored(follower)
    );
    cluster.kill9(follower);
    cluster.restart_stopped();
    let lines = wait_until(
        &format!("broker {follower} to open saved-0 again"),
        Duration::from_secs(20),
        || Some(restored(follower)).filter(|l| !l.is_empty()),
    );
    assert!(
        lines.len() == 1 && lines[0].contains(&format!("high_watermark={RECORDS}")),
        "broker {follower} after SIGKILL: {lines:?}"
    );
}

/// OffsetForLeaderEpoch, which a returning follower asks before it cuts its log, is answered
/// by the shard that owns each partition, whichever shard of the broker the connection
/// landed on: leaders say where the epoch ends, followers refuse.
#[test]
fn offset_for_leader_epoch_is_answered_by_the_shard_owning_each_partition() {
    const PARTITIONS: i32 = 6;
    let cluster = Cluster::up("epochs");
    let topic = "epochs";
    cluster.create_topic(topic, PARTITIONS, &[]);
    for p in 0..PARTITIONS {
        let count = p as u64 + 1;
        assert_eq!(
            produce(&cluster.bootstrap, topic, p, 100 * count, count, "all"),
            count as usize
        );
    }
    let state = cluster.wait_all_in_sync("records produced");
    let owners: BTreeSet<usize> =
        (0..PARTITIONS).map(|p| fjord::broker::shards::owner(SHARDS, topic, p)).collect();
    assert_eq!(
        owners.len(),
        SHARDS,
        "every shard of a broker owns some of the {PARTITIONS} partitions"
    );
    for id in 0..BROKERS {
        let asked: Vec<(i32, i32, i32)> = (0..PARTITIONS)
            .map(|p| {
                let epoch = partition(&state, topic, p).leader_epoch;
                (p, epoch, epoch)
            })
            .collect();
        let mut conn = cluster.connect(id);
        let answers = wire::offset_for_leader_epoch(&mut conn, 1, 99, topic, &asked);
        assert_eq!(answers.len(), PARTITIONS as usize, "broker {id}: {answers:?}");
        for (answer, (p, epoch, _)) in answers.iter().zip(&asked) {
            assert_eq!(answer.partition, *p, "broker {id}: answers in request order");
            let expected = if partition(&state, topic, *p).leader == id {
                wire::EpochEnd {
                    partition: *p,
                    error: 0,
                    leader_epoch: *epoch,
                    end_offset: i64::from(*p) + 1,
                }
            } else {
                wire::EpochEnd { partition: *p, error: 6, leader_epoch: -1, end_offset: -1 }
                // NOT_LEADER_OR_FOLLOWER
            };
            assert_eq!(
                *answer,
                expected,
                "broker {id}, {topic}-{p} (shard {})",
                fjord::broker::shards::owner(SHARDS, topic, *p)
            );
        }
    }
}

/// Issue 18: a client fetching (v16+, KIP-951) from a broker that is not the leader is
/// told which broker is, its epoch and its address, in the same answer.
#[test]
fn a_fetch_from_a_follower_names_the_leader_and_its_address() {
    use kafka_protocol::messages::{
        fetch_request, ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    };
    let cluster = Cluster::up("fetch-leader");
    let topic = "fetch-leader";
    let (leader, follower) = cluster.one_partition_in_sync(topic);
    let epoch = partition(&cluster.state(), topic, 0).leader_epoch;
    let mut conn = cluster.connect(follower);
    let mut all = MetadataRequest::default();
    all.topics = None;
    let metadata: MetadataResponse = wire::codec_call(&mut conn, ApiKey::Metadata, 13, 1, &all);
    let id = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .map(|t| t.topic_id)
        .expect("Metadata lists the topic");
    for version in [15i16, 16, 18] {
        let mut request = FetchRequest::default();
        request.max_wait_ms = 0;
        request.max_bytes = 1 << 20;
        request.replica_state.replica_id = kafka_protocol::messages::BrokerId(-1);
        let mut wanted = fetch_request::FetchTopic::default();
        wanted.topic_id = id;
        let mut p = fetch_request::FetchPartition::default();
        p.partition_max_bytes = 1 << 20;
        wanted.partitions = vec![p];
        request.topics = vec![wanted];
        let answer: FetchResponse =
            wire::codec_call(&mut conn, ApiKey::Fetch, version, 2, &request);
        let refused = &answer.responses[0].partitions[0];
        assert_eq!(refused.error_code, 6, "v{version}: NOT_LEADER_OR_FOLLOWER from {follower}");
        if version < 16 {
            assert_eq!(refused.current_leader.leader_id.0, -1, "v{version}: no leader field");
            assert!(answer.node_endpoints.is_empty(), "v{version}");
            continue;
        }
        assert_eq!(
            (refused.current_leader.leader_id.0, refused.current_leader.leader_epoch),
            (leader, epoch),
            "v{version}: the leader and its epoch"
        );
        let endpoints: Vec<String> = answer
            .node_endpoints
            .iter()
            .map(|n| format!("{}:{}:{}", n.node_id.0, n.host.as_str(), n.port))
            .collect();
        assert_eq!(endpoints, vec![format!("{leader}:{}", cluster.address(leader))], "v{version}");
    }
}

#[test]
fn leader_failover_is_fast() {
    // One shard per broker here; every other cluster test runs brokers with `SHARDS`.
    let cluster = Cluster::up_with_shards("fast", 1);
    cluster.create_topic("fast", 3, &[]);
    cluster.wait_all_in_sync("topic created");
    let state = cluster.state();
    // First a leader that is not the controller, then the controller (also a leader).
    let controller = state.controller;
    let follower_leader = (0..BROKERS)
        .find(|id| *id != controller && !led_by(&state, *id).is_empty())
        .expect("a non-controller broker leads something");
    for (what, victim) in [("a leader", follower_leader), ("the controller", controller)] {
        let before = cluster.state();
        let led = led_by(&before, victim);
        assert!(!led.is_empty(), "broker {victim} leads nothing: {before:?}");
        let start = Instant::now();
        cluster.kill9(victim);
        let deadline = Duration::from_secs(10);
        let after = cluster.wait_state(
            &format!("new leaders after killing {what} (broker {victim})"),
            deadline,
            |s| reelected(s, &led, victim),
        );
        let elapsed = start.elapsed();
        eprintln!(
            "killing {what} (broker {victim}): {} partitions re-elected in {elapsed:?}",
            led.len()
        );
        for (topic, index, epoch) in &led {
            let p = partition(&after, topic, *index);
            assert_eq!(
                p.leader_epoch,
                epoch + 1,
                "{topic}-{index}: one election, one epoch: {p:?}"
            );
            assert!(
                p.isr.contains(&p.leader) && !p.isr.contains(&victim),
                "{topic}-{index}: {p:?}"
            );
        }
        if victim == controller {
            assert_ne!(after.controller, victim, "a new controller wrote the state");
        }
        assert!(
            elapsed.as_millis() < FAILOVER_MS_MAX,
            "failover after killing {what} took {elapsed:?}, more than {FAILOVER_MS_MAX} ms"
        );
        cluster.restart_stopped();
        cluster.wait_all_in_sync(&format!("broker {victim} restarted"));
    }
}

/// Rounds of kill, poll, restart until one Metadata answer fell between a kill and the
/// re-election: a window of one or two 100 ms ticks, open only when the asker's liveness
/// tick sees the death before the controller's does (about every other round).
const UNLISTED_ROUNDS_MAX: usize = 10;
/// Kafka's LEADER_NOT_AVAILABLE.
const LEADER_NOT_AVAILABLE: i16 = 5;

#[test]
fn metadata_never_names_a_leader_missing_from_its_brokers_list() {
    // Between a leader's death and the controller's election, the state still names the
    // dead broker while the brokers list no longer has it. librdkafka, told of a leader it
    // has no address for, hands the partition to no broker and back, and in the nemesis
    // suite a consumer stopped delivering that partition for good. Kafka answers such a
    // partition with leader -1 and LEADER_NOT_AVAILABLE; so must Fjord, from every broker.
    let topic = "unlisted";
    let cluster = Cluster::up("unlisted");
    cluster.create_topic(topic, 6, &[]);
    cluster.wait_all_in_sync("topic created");
    let mut in_window = 0;
    for round in 0..UNLISTED_ROUNDS_MAX {
        let state = cluster.state();
        let leads_topic = |id: i32| led_by(&state, id).iter().any(|(t, _, _)| t == topic);
        let Some(victim) = (0..BROKERS).find(|id| *id != state.controller && leads_topic(*id))
        else {
            break;
        };
        let led: Vec<(String, i32, i32)> =
            led_by(&state, victim).into_iter().filter(|(t, _, _)| t == topic).collect();
        // Not the controller: it elects the moment it sees the death, so its own answers
        // leave no window to check.
        let asker = (0..BROKERS)
            .find(|id| *id != victim && *id != state.controller)
            .expect("a third broker");
        let mut conn = cluster.connect(asker);
        cluster.kill9(victim);
        let deadline = Instant::now() + Duration::from_secs(10);
        for correlation_id in 1.. {
            let view = wire::metadata_view(&mut conn, correlation_id, &[topic]);
            let listed: BTreeSet<i32> = view.brokers.iter().map(|(id, _)| *id).collect();
            for p in &view.partitions {
                assert!(
                    p.leader == -1 || listed.contains(&p.leader),
                    "round {round}: broker {asker} names leader {} for {topic}-{} but lists \
                     only brokers {listed:?}",
                    p.leader,
                    p.index
                );
                if p.leader == -1 {
                    assert_eq!(p.error, LEADER_NOT_AVAILABLE, "{topic}-{}: {p:?}", p.index);
                }
            }
            if !listed.contains(&victim) && view.partitions.iter().any(|p| p.leader == -1) {
                in_window += 1;
            }
            let reelected = led.iter().all(|(_, index, _)| {
                view.partitions.iter().any(|p| p.index == *index && p.leader >= 0)
            });
            if reelected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: broker {asker} still names no leader for the partitions of \
                 broker {victim} 10 s after its death: {view:?}"
            );
        }
        eprintln!(
            "round {round}: {in_window} answers between the kill of {victim} and re-election"
        );
        cluster.restart_stopped();
        cluster.wait_all_in_sync(&format!("broker {victim} restarted"));
        if in_window > 0 {
            break;
        }
    }
    assert!(
        in_window > 0,
        "no Metadata answer fell between a leader's death and its re-election in \
         {UNLISTED_ROUNDS_MAX} rounds: nothing was checked"
    );
}

#[test]
fn a_stopped_controller_is_replaced_and_fenced_and_its_resumed_leader_acknowledges_nothing() {
    // A stopped process keeps its flocks: the controller role must be a lease on its
    // heartbeat, or a SIGSTOPped controller stops all failover for as long as it is stopped.
    let cluster = Cluster::up("paused-controller");
    let topic = "paused";
    cluster.create_topic(topic, 3, &[]);
    let mut before = cluster.wait_all_in_sync("topic created");
    let controller = before.controller;
    if led_by(&before, controller).iter().all(|(t, _, _)| t != topic) {
        cluster.move_leader(topic, 0, controller);
        before = cluster.wait_all_in_sync("the controller leads a partition");
    }
    let led: Vec<(String, i32, i32)> =
        led_by(&before, controller).into_iter().filter(|(t, _, _)| t == topic).collect();
    let (_, victim_partition, _) = led[0].clone();
    // Connected before the pause: the kernel keeps the request until the broker resumes.
    let mut to_stopped = cluster.connect(controller);

    let start = Instant::now();
    cluster.freeze(controller);
    let after = cluster.wait_state(
        &format!("a new controller and new leaders while broker {controller} is stopped"),
        Duration::from_secs(15),
        |s| {
            s.controller != controller
                && s.controller_epoch > before.controller_epoch
                && reelected(s, &led, controller)
        },
    );
    let took = start.elapsed();
    eprintln!(
        "controller {controller} stopped: controller {} (epoch {}) re-elected {} partitions in {took:?}",
        after.controller,
        after.controller_epoch,
        led.len()
    );
    // Acknowledgements resume on every partition while the old controller stays stopped.
    let live: Vec<i32> = (0..BROKERS).filter(|id| *id != controller).collect();
    for index in 0..3 {
        assert_eq!(
            produce(&cluster.addresses(&live), topic, index, 100 * index as u64, 5, "all"),
            5,
            "{topic}-{index} takes acks=all writes with broker {controller} stopped"
        );
    }

    // A request that waited in the socket while the deposed leader was stopped: on resume
    // it reads the state before acknowledging, and refuses (acks=1 would otherwise be
    // acknowledged and then truncated).
    let batch =
        wire::record_batch(&[(None, b"late".as_slice())], 1_700_000_000_000, wire::NO_PRODUCER);
    to_stopped
        .send(&wire::produce_request(7, topic, victim_partition, &batch, 1))
        .expect("send to the stopped broker");
    cluster.thaw(controller);
    let (error, _) = wire::produce_answer(&mut to_stopped, 7, topic, victim_partition);
    assert_eq!(
        error, NOT_LEADER_OR_FOLLOWER,
        "broker {controller}, deposed while stopped, answered an acks=1 produce to {topic}-{victim_partition}"
    );

    // The resumed controller steps down without writing the state.
    wait_until(
        &format!("broker {controller} to step down as controller"),
        Duration::from_secs(10),
        || cluster.log(controller).contains("stepping down").then_some(()),
    );
    let settled = cluster.wait_all_in_sync(&format!("broker {controller} resumed"));
    assert_eq!(
        (settled.controller, settled.controller_epoch),
        (after.controller, after.controller_epoch),
        "the fenced controller wrote the state as controller"
    );
}

#[test]
fn divergent_tail_is_truncated_on_rejoin() {
    let mut cluster = Cluster::up("diverge");

    // Part 1: the in-sync set shrinks to the leader alone, the leader writes alone and dies.
    // No other replica may lead (no unclean election): the partition goes offline until the
    // last in-sync replica returns, and then nothing it acknowledged is lost.
    let topic = "lonely";
    cluster.create_topic(topic, 1, &["min.insync.replicas=1"]);
    assert_eq!(produce(&cluster.bootstrap, topic, 0, 0, 5, "all"), 5);
    let state = cluster.state();
    let leader = partition(&state, topic, 0).leader;
    let followers: Vec<i32> = (0..BROKERS).filter(|id| *id != leader).collect();
    for f in &followers {
        cluster.kill9(*f);
    }
    cluster.wait_state(
        &format!("the in-sync set of {topic}-0 to shrink to its leader {leader}"),
        Duration::from_secs(10),
        |s| partition(s, topic, 0).isr == vec![leader],
    );
    assert_eq!(
        produce(&cluster.address(leader), topic, 0, 5, 5, "1"),
        5,
        "the lone leader acknowledges acks=1"
    );
    let epoch = partition(&cluster.state(), topic, 0).leader_epoch;
    cluster.kill9(leader);
    for f in &followers {
        cluster.start_alone(*f);
    }
    let offline = cluster.wait_state(
        &format!("{topic}-0 to go offline (its only in-sync replica {leader} is dead)"),
        Duration::from_secs(10),
        |s| partition(s, topic, 0).leader == -1,
    );
    let p = partition(&offline, topic, 0);
    assert_eq!(p.isr, vec![leader], "the in-sync set remembers who may lead: {p:?}");
    assert!(p.leader_epoch > epoch, "{p:?}");
    // Clients see no leader for it, while the followers are up (once each broker has read
    // the new state, on its next tick).
    let survivors = cluster.addresses(&followers);
    let mut listing = String::new();
    let offline_seen = try_until(Duration::from_secs(5), || {
        listing = String::from_utf8(crate::support::kcat_ok(
            &["-b", &survivors, "-L", "-t", topic, "-m", "10"],
            None,
        ))
        .expect("UTF-8");
        listing.contains("partition 0, leader -1")
    });
    assert!(
        offline_seen,
        "Metadata of an offline partition, 5 s after the state file said so:\n{listing}"
    );
    cluster.restart_stopped();
    let back = cluster.wait_state(
        &format!("{topic}-0 led by {leader} again"),
        Duration::from_secs(10),
        |s| partition(s, topic, 0).leader == leader,
    );
    assert!(partition(&back, topic, 0).leader_epoch > p.leader_epoch);
    cluster.wait_all_in_sync("after the offline partition returned");
    let values = value_indexes(&consume(&cluster.bootstrap, topic));
    assert_eq!(
        values,
        (0..10).collect::<Vec<_>>(),
        "the lone leader's acknowledged records survive"
    );

    // Part 2: a true divergence. Followers are frozen (SIGSTOP: they keep their liveness
    // locks, so they stay in the in-sync set for a while), the leader takes acks=1 records
    // nobody copies and dies; a follower is elected, takes other records at the same
    // offsets; the old leader returns and must cut its tail before following.
    // The leader must not be the controller: a controller would see the frozen followers'
    // heartbeats go stale (3 s) and shrink the in-sync set, and the frozen controller does
    // nothing until it is thawed.
    let state = cluster.state();
    let topic = (0..10)
        .map(|n| format!("diverge{n}"))
        .find(|name| {
            cluster.create_topic(name, 1, &["min.insync.replicas=1"]);
            let s = cluster.state();
            partition(&s, name, 0).leader != s.controller
        })
        .unwrap_or_else(|| {
            panic!("every topic created was led by the controller {}", state.controller)
        });
    let topic = topic.as_str();
    cluster.wait_all_in_sync("before the divergence");
    const REPLICATED: u64 = 10;
    const UNREPLICATED: u64 = 5;
    const NEW: u64 = 7;
    assert_eq!(produce(&cluster.bootstrap, topic, 0, 0, REPLICATED, "all"), REPLICATED as usize);
    let state = cluster.state();
    let old = partition(&state, topic, 0).clone();
    let old_leader = old.leader;
    let followers: Vec<i32> = (0..BROKERS).filter(|id| *id != old_leader).collect();
    assert!(
        followers.contains(&state.controller),
        "controller {} is a follower of {topic}-0",
        state.controller
    );
    for f in &followers {
        assert_eq!(
            log_end(&cluster.log_bytes(*f, topic, 0)),
            REPLICATED as i64,
            "follower {f} holds the acks=all records"
        );
        cluster.freeze(*f);
    }
    let frozen_at = Instant::now();
    // Any fetch a follower had parked on the leader ends (empty) within its wait; only then
    // do the records to lose exist, so no answer carrying them sits in a frozen socket.
    std::thread::sleep(Duration::from_millis(FOLLOWER_FETCH_WAIT_MS + 300));
    assert_eq!(
        produce(&cluster.address(old_leader), topic, 0, 100, UNREPLICATED, "1"),
        UNREPLICATED as usize,
        "the leader acknowledges acks=1 alone"
    );
    let isr = partition(&cluster.state(), topic, 0).isr.clone();
    assert_eq!(
        isr.len(),
        3,
        "the frozen followers are still in sync {:?} after the acks=1 produce (took {:?})",
        isr,
        frozen_at.elapsed()
    );
    let leader_log = cluster.log_bytes(old_leader, topic, 0);
    assert_eq!(
        log_end(&leader_log),
        (REPLICATED + UNREPLICATED) as i64,
        "the leader wrote the acks=1 records"
    );
    for f in &followers {
        assert_eq!(
            log_end(&cluster.log_bytes(*f, topic, 0)),
            REPLICATED as i64,
            "frozen follower {f} did not get the acks=1 records"
        );
    }
    cluster.kill9(old_leader);
    for f in &followers {
        cluster.thaw(*f);
    }
    let elected = cluster.wait_state(
        &format!("a frozen-then-thawed follower to lead {topic}-0"),
        Duration::from_secs(10),
        |s| {
            let p = partition(s, topic, 0);
            followers.contains(&p.leader) && p.leader_epoch > old.leader_epoch
        },
    );
    let new = partition(&elected, topic, 0).clone();
    let new_leader = new.leader;
    eprintln!(
        "{topic}-0: leader {old_leader} (epoch {}) died with {UNREPLICATED} records of its own; {new_leader} leads epoch {}",
        old.leader_epoch, new.leader_epoch
    );
    let survivors = cluster.addresses(&followers);
    assert_eq!(
        produce(&survivors, topic, 0, 200, NEW, "all"),
        NEW as usize,
        "the new leader takes records"
    );
    // The divergence, on disk: the same offsets hold different records in different epochs.
    let dead_log = cluster.log_bytes(old_leader, topic, 0);
    let new_log = cluster.log_bytes(new_leader, topic, 0);
    assert_eq!(
        log_end(&dead_log),
        (REPLICATED + UNREPLICATED) as i64,
        "kill -9 kept the page cache"
    );
    assert_eq!(log_end(&new_log), (REPLICATED + NEW) as i64);
    assert_ne!(dead_log, new_log);
    let tail_epochs = |log: &[u8]| {
        batches(log)
            .into_iter()
            .filter(|b| b.0 >= REPLICATED as i64)
            .map(|b| b.1)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        tail_epochs(&dead_log),
        BTreeSet::from([old.leader_epoch]),
        "{:?}",
        batches(&dead_log)
    );
    assert_eq!(
        tail_epochs(&new_log),
        BTreeSet::from([new.leader_epoch]),
        "{:?}",
        batches(&new_log)
    );

    // The old leader returns as a follower: it must cut offsets 10.. and copy the new ones.
    cluster.restart_stopped();
    let converged = wait_until(
        &format!("broker {old_leader}'s {topic}-0 log to equal the new leader {new_leader}'s"),
        Duration::from_secs(20),
        || {
            let mine = cluster.log_bytes(old_leader, topic, 0);
            (mine == cluster.log_bytes(new_leader, topic, 0)).then_some(mine)
        },
    );
    assert_eq!(log_end(&converged), (REPLICATED + NEW) as i64);
    let log = cluster.log(old_leader);
    let truncated: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("truncated divergent tail") && l.contains(&format!("{topic}-0")))
        .collect();
    assert!(
        !truncated.is_empty(),
        "broker {old_leader} logged no truncation of {topic}-0:\n{}",
        cluster.log_tail(old_leader)
    );
    assert!(
        truncated.iter().any(|l| l.contains(&format!("offset={REPLICATED}"))),
        "truncated at the wrong offset: {truncated:?}"
    );
    cluster.wait_all_in_sync("old leader rejoined");
    let values = value_indexes(&consume(&cluster.bootstrap, topic));
    let expected: Vec<u64> = (0..REPLICATED).chain(200..200 + NEW).collect();
    assert_eq!(
        values, expected,
        "the unreplicated records (100..) are gone, the new leader's are there"
    );
    // Finally the old leader leads again (the others die): it serves the same records.
    for f in &followers {
        cluster.kill9(*f);
    }
    cluster.wait_state(
        &format!("{old_leader} to lead {topic}-0 again"),
        Duration::from_secs(10),
        |s| partition(s, topic, 0).leader == old_leader,
    );
    let address = cluster.address(old_leader);
    let leads = try_until(Duration::from_secs(5), || {
        String::from_utf8_lossy(&crate::support::kcat_ok(
            &["-b", &address, "-L", "-t", topic, "-m", "10"],
            None,
        ))
        .contains(&format!("partition 0, leader {old_leader},"))
    });
    assert!(
        leads,
        "broker {old_leader} does not say it leads {topic}-0 5 s after the state file did"
    );
    let values = value_indexes(&consume(&address, topic));
    assert_eq!(values, expected, "read from the rejoined replica as leader");
}

/// The state file written by a cluster with topic `keep` (2 partitions, 6 messages), the
/// cluster then stopped.
fn stopped_cluster_with_topic(label: &str) -> (Cluster, String) {
    let cluster = Cluster::up(label);
    cluster.create_topic("keep", 2, &[]);
    assert_eq!(produce(&cluster.bootstrap, "keep", 0, 0, 3, "all"), 3);
    assert_eq!(produce(&cluster.bootstrap, "keep", 1, 3, 3, "all"), 3);
    cluster.wait_all_in_sync("keep created");
    cluster.down();
    let text = std::fs::read_to_string(cluster.state_path()).expect("state file");
    (cluster, text)
}

/// Starts broker 0 alone on a damaged state file; returns (exit status or None if it kept
/// running, its output). A broker that keeps running is stopped after `wait`.
fn serve_alone(cluster: &Cluster, wait: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["serve", "--cluster"])
        .arg(cluster.dir.join("cluster.toml"))
        .args(["--broker-id", "0"])
        .args(&cluster.serve_args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord serve");
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    };
    let output = child.wait_with_output().expect("collect output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        plain(&String::from_utf8_lossy(&output.stderr))
    );
    (status, text)
}

#[test]
fn state_file_survives_a_crash_during_write() {
    let (cluster, good) = stopped_cluster_with_topic("statefile");
    let before: ClusterState = toml::from_str(&good).expect("the state file parses");
    let keep_id = before.topics["keep"].id.clone();
    let tmp_path = cluster
        .dir
        .join("cluster-state")
        .join(format!("{:020}.tmp.00000000deadbeef", before.version + 1));

    // A crash during a write leaves a partial temporary file beside the old state.
    let mut partial = good.as_bytes()[..good.len() / 2].to_vec();
    partial.extend_from_slice(b"\0\0\xff garbage [[[ = \n");
    std::fs::write(&tmp_path, &partial).expect("write the partial tmp file");
    cluster.restart_stopped();
    let after = cluster.wait_settled();
    let keep = after.topics.get("keep").unwrap_or_else(|| {
        panic!("topic keep lost after a restart beside a partial tmp file: {after:?}")
    });
    assert_eq!(keep.id, keep_id, "same topic, same id");
    assert_eq!(keep.partitions.len(), 2);
    assert!(
        after.version >= before.version,
        "the state did not go back: {} < {}",
        after.version,
        before.version
    );
    assert_eq!(
        sorted(value_indexes(&consume(&cluster.bootstrap, "keep"))),
        (0..6).collect::<Vec<_>>()
    );
    // The next writes pass its version; the writer that does removes it.
    cluster.wait_state("the leftover temporary file removed", Duration::from_secs(30), |s| {
        s.version > before.version && !tmp_path.exists()
    });
    cluster.down();

    // A torn state file (cut inside a line, as no atomic writer would leave it) must be
    // refused loudly, never read as a smaller cluster.
    let state_path = cluster.state_path();
    let good = std::fs::read_to_string(&state_path).expect("state file");
    let header = good.find("[topics.keep]").expect("keep in the state file");
    let torn = &good[..header + "[topics.ke".len()];
    std::fs::write(&state_path, torn).expect("write the torn state file");
    let (status, output) = serve_alone(&cluster, Duration::from_secs(15));
    let status =
        status.unwrap_or_else(|| panic!("a broker kept running on a torn state file:\n{output}"));
    assert!(!status.success(), "a broker exited {status} on a torn state file:\n{output}");
    assert!(
        output.contains(&format!("{}", state_path.display())),
        "the error does not name the state file {}:\n{output}",
        state_path.display()
    );
    assert_eq!(
        std::fs::read_to_string(&state_path).expect("state file"),
        torn,
        "the torn file was left for the operator"
    );
    // Restored from a copy, the cluster comes back with everything.
    std::fs::write(&state_path, &good).expect("restore the state file");
    cluster.restart_stopped();
    let restored = cluster.wait_settled();
    assert_eq!(restored.topics.get("keep").map(|t| t.id.clone()), Some(keep_id));
    assert_eq!(
        sorted(value_indexes(&consume(&cluster.bootstrap, "keep"))),
        (0..6).collect::<Vec<_>>()
    );
}

#[test]
fn state_file_cut_at_a_line_boundary_is_not_read_as_a_smaller_cluster() {
    // A state file cut right before a topic's table is still valid TOML: nothing in the
    // format itself says a topic is missing. The broker must not quietly start without it.
    let (cluster, good) = stopped_cluster_with_topic("statecut");
    let state_path = cluster.state_path();
    let header = good.find("[topics.keep]").expect("keep in the state file");
    let cut = &good[..header];
    let parsed: ClusterState = toml::from_str(cut).expect("the cut file is valid TOML");
    assert!(!parsed.topics.contains_key("keep"));
    std::fs::write(&state_path, cut).expect("write the cut state file");
    let (status, output) = serve_alone(&cluster, Duration::from_secs(5));
    let now: Option<ClusterState> =
        std::fs::read_to_string(&state_path).ok().and_then(|t| toml::from_str(&t).ok());
    let refused = status.is_some_and(|s| !s.success())
        && output.contains(&format!("{}", state_path.display()));
    let tail: Vec<&str> = output.lines().collect();
    assert!(
        refused,
        "a broker accepted a state file cut at a line boundary: topic keep silently gone (exit status {status:?}: \
         None = still serving after 5 s); the cut file had version {}, the file afterwards has version {:?} with \
         topics {:?}; partition dirs on disk: {:?}\nbroker output (tail):\n{}",
        parsed.version,
        now.as_ref().map(|s| s.version),
        now.as_ref().map(|s| s.topics.keys().cloned().collect::<Vec<_>>()),
        std::fs::read_dir(cluster.file.data_dir(0).expect("data dir"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("keep")).collect::<Vec<_>>())
            .unwrap_or_default(),
        tail[tail.len().saturating_sub(15)..].join("\n")
    );
}

#[test]
fn consumer_group_offsets_survive_coordinator_failover() {
    let cluster = Cluster::up("groups");
    let topic = "events";
    cluster.create_topic(topic, 3, &[]);
    for p in 0..3 {
        assert_eq!(produce(&cluster.bootstrap, topic, p, u64::from(p as u32) * 10, 10, "all"), 10);
    }
    // A group whose Java hash is not negative: abs() and a sign mask then agree on its
    // offsets partition.
    let group = (0..100)
        .map(|n| format!("replication-group-{n}"))
        .find(|g| java_string_hash(g) >= 0)
        .expect("a group id");
    let offsets_partition = (java_string_hash(&group) as usize % OFFSETS_PARTITIONS) as i32;
    let out = python_ok(
        "groups_client.py",
        &[
            "consume",
            "ck",
            &cluster.bootstrap,
            topic,
            &group,
            "--commit-after",
            "13",
            "--max-s",
            "60",
        ],
    );
    let first = parse_messages(&out);
    assert_eq!(first.len(), 13, "{out}");
    let committed: BTreeMap<i32, i64> = tagged(&out, "committed")
        .iter()
        .map(|f| (f[0].parse().expect("partition"), f[1].parse().expect("offset")))
        .collect();
    assert!(!committed.is_empty(), "{out}");

    let state = cluster.state();
    let offsets = partition(&state, "__consumer_offsets", offsets_partition).clone();
    let coordinator = offsets.leader;
    eprintln!("group {group}: offsets partition {offsets_partition}, coordinator broker {coordinator}, committed {committed:?}");
    cluster.kill9(coordinator);
    // A new coordinator, and new leaders for the topic's partitions the dead broker led:
    // until then Metadata answers those with LEADER_NOT_AVAILABLE, as Kafka does, and
    // librdkafka's watermark query refuses an unknown partition.
    cluster.wait_state(
        "a new coordinator (leader of the group's offsets partition) and topic leaders",
        Duration::from_secs(10),
        |s| {
            let p = partition(s, "__consumer_offsets", offsets_partition);
            let led = |p: &PartitionState| p.leader >= 0 && p.leader != coordinator;
            led(p) && s.topics[topic].partitions.iter().all(led)
        },
    );

    // A new member of the group resumes exactly after the commits, from the new coordinator.
    let check_resume = |when: &str| {
        let output = python(
            "groups_client.py",
            &["consume", "ck", &cluster.bootstrap, topic, &group, "--max-s", "60"],
        );
        let out = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "consumer {when}: {}\n{out}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let second = parse_messages(&out);
        for p in 0..3 {
            let firsts: Vec<i64> =
                second.iter().filter(|m| m.partition == p).map(|m| m.offset).collect();
            let expected = committed.get(&p).copied().unwrap_or(0);
            if expected < 10 {
                assert_eq!(
                    firsts.first().copied(),
                    Some(expected),
                    "{when}: partition {p} resumes at its committed offset {expected}: {firsts:?}"
                );
            } else {
                assert!(firsts.is_empty(), "{when}: partition {p} was read to its end: {firsts:?}");
            }
        }
        let mut all: Vec<(i32, i64)> =
            first.iter().chain(&second).map(|m| (m.partition, m.offset)).collect();
        all.sort_unstable();
        let expected: Vec<(i32, i64)> = (0..3).flat_map(|p| (0..10).map(move |o| (p, o))).collect();
        assert_eq!(all, expected, "{when}: the first member's 13 and the next member's messages are every message exactly once");
    };
    check_resume("after the coordinator was killed");
    // The old coordinator returns (as a follower); the commits are still what they were.
    cluster.restart_stopped();
    cluster.wait_all_in_sync("old coordinator restarted");
    check_resume("after the old coordinator returned");
}

/// Partitions of the keyed producer's topic, before and after CreatePartitions.
const GROWN_FROM: i32 = 2;
const GROWN_TO: i32 = 4;
/// The `max.message.bytes` set on a topic while the cluster runs, and a record above it.
const LOWERED_MESSAGE_BYTES: usize = 1000;
const OVER_LIMIT_VALUE_BYTES: usize = 4000;
/// How long every broker may take to apply a config change made through another (it reads
/// the cluster state every tick).
const CONFIG_SPREAD_MAX: Duration = Duration::from_secs(10);
/// Kafka's MESSAGE_TOO_LARGE and OFFSET_OUT_OF_RANGE.
const MESSAGE_TOO_LARGE: i16 = 10;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Produces one `value_bytes` record to every partition of `topic` at its leader until each
/// answers `expected` (the brokers apply a config change at their next state read).
fn produce_until_each_leader_answers(
    cluster: &Cluster,
    topic: &str,
    value_bytes: usize,
    expected: i16,
) {
    produce_until_leaders_answer(cluster, topic, value_bytes, |_| expected);
}

/// Like `produce_until_each_leader_answers`, expecting `expected(leader)` from each leader.
fn produce_until_leaders_answer(
    cluster: &Cluster,
    topic: &str,
    value_bytes: usize,
    expected: impl Fn(i32) -> i16,
) {
    let state = cluster.state();
    let value = vec![b'x'; value_bytes];
    let batch =
        wire::record_batch(&[(None, value.as_slice())], 1_700_000_000_000, wire::NO_PRODUCER);
    for (index, p) in state.topics[topic].partitions.iter().enumerate() {
        let expected = expected(p.leader);
        let mut conn = cluster.connect(p.leader);
        let mut correlation_id = 0;
        wait_until(
            &format!(
                "broker {} answering {expected} for a {value_bytes}-byte record to {topic}-{index}",
                p.leader
            ),
            CONFIG_SPREAD_MAX,
            || {
                correlation_id += 1;
                let (error, _) =
                    wire::produce(&mut conn, correlation_id, topic, index as i32, &batch);
                (error == expected).then_some(())
            },
        );
    }
}

/// Issue 18: topic configs and partition counts change through any broker, reach every
/// broker through the cluster state, and apply without a restart, while a keyed
/// idempotent producer writes: every acknowledged record is kept once, and each key moves
/// to another partition at most once, when the producer learns the new count.
#[test]
fn topic_configs_and_partitions_change_on_every_broker_while_a_keyed_producer_runs() {
    let cluster = Cluster::up("alter");
    let (topic, limited) = ("growing", "limited");
    cluster.create_topic(topic, GROWN_FROM, &[]);
    cluster.create_topic(limited, BROKERS, &[]);
    let state = cluster.wait_all_in_sync("topics created");
    let leaders: BTreeSet<i32> =
        state.topics[limited].partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), BROKERS as usize, "every broker leads a partition of {limited}");
    let producer = VerifiedProducer::start(&cluster, topic, 90);
    let acks_path = producer.acks_path.clone();
    wait_for_acks(&acks_path, 200, "before the changes");

    // A lowered max.message.bytes refuses the next big record on every leader, and its
    // removal takes it again.
    let set = format!("max.message.bytes={LOWERED_MESSAGE_BYTES}");
    let out = python_ok("admin.py", &["incremental", &cluster.bootstrap, limited, "--set", &set]);
    assert_eq!(tagged(&out, "ok").len(), 1, "{out}");
    assert_eq!(
        cluster.state().topics[limited].config.get("max.message.bytes").map(String::as_str),
        Some(LOWERED_MESSAGE_BYTES.to_string().as_str()),
        "the change is in the cluster state"
    );
    produce_until_each_leader_answers(&cluster, limited, OVER_LIMIT_VALUE_BYTES, MESSAGE_TOO_LARGE);
    let args = ["incremental", &cluster.bootstrap, limited, "--delete", "max.message.bytes"];
    assert_eq!(tagged(&python_ok("admin.py", &args), "ok").len(), 1);
    produce_until_each_leader_answers(&cluster, limited, OVER_LIMIT_VALUE_BYTES, 0);

    // More partitions while the producer writes: placed over the brokers, led and in sync.
    let count = GROWN_TO.to_string();
    let out = python_ok("admin.py", &["create-partitions", &cluster.bootstrap, topic, &count]);
    assert_eq!(tagged(&out, "ok").len(), 1, "{out}");
    let state = cluster.wait_all_in_sync("partitions added");
    let grown = &state.topics[topic].partitions;
    assert_eq!(grown.len(), GROWN_TO as usize, "{grown:?}");
    for p in &grown[GROWN_FROM as usize..] {
        assert_eq!(
            p.replicas.len(),
            BROKERS as usize,
            "a new partition has the topic's replication factor: {p:?}"
        );
    }
    // The producer learns the new count from its next metadata refresh (1 s).
    wait_until("acknowledgements from the added partitions", Duration::from_secs(30), || {
        read_deliveries(&acks_path)
            .iter()
            .any(|d| matches!(d, Delivery::Ack { partition, .. } if *partition >= GROWN_FROM))
            .then_some(())
    });
    let acked = ack_count(&acks_path);
    wait_for_acks(&acks_path, acked + 200, "after the partitions were added");
    producer.stop_and_check_placed(&cluster, &[], KeyPlacement::MovesOnce);
    for index in GROWN_FROM..GROWN_TO {
        let leader = cluster.log_bytes(grown[index as usize].leader, topic, index);
        for id in 0..BROKERS {
            assert_eq!(
                cluster.log_bytes(id, topic, index),
                leader,
                "replica {id} of {topic}-{index}"
            );
        }
    }
}

/// Kafka's default `message.max.bytes`: the per-broker value that takes big records again.
const MESSAGE_BYTES_MAX_DEFAULT: &str = "1048588";
/// The broker whose own dynamic value differs from the cluster-wide one.
const OWN_CONFIG_BROKER: i32 = 1;

/// `kafka-configs --alter --entity-type brokers ENTITY --add-config CHANGE` through `cluster`.
fn alter_broker_config(cluster: &Cluster, entity: &[&str], change: &str) {
    let mut args = vec!["kafka-configs", "--bootstrap-server", &cluster.bootstrap, "--alter"];
    args.extend_from_slice(&["--entity-type", "brokers"]);
    args.extend_from_slice(entity);
    args.extend_from_slice(&["--add-config", change]);
    let out = kafka_tool_ok(&args, None);
    assert!(out.contains("Completed updating"), "{args:?}:\n{out}");
}

/// Issue 18: broker configs changed while the cluster runs reach every broker through the
/// cluster state and apply without a restart: a cluster-wide `message.max.bytes` on every
/// leader, one broker's own value only on that broker (it wins over the cluster-wide one),
/// and a broker killed and restarted reads both back from the state.
#[test]
fn dynamic_broker_configs_reach_every_broker_through_the_cluster_state() {
    let cluster = Cluster::up("broker-configs");
    let topic = "limited";
    cluster.create_topic(topic, BROKERS, &[]);
    let state = cluster.wait_all_in_sync("topic created");
    let leaders: BTreeSet<i32> = state.topics[topic].partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), BROKERS as usize, "every broker leads a partition of {topic}");

    let lowered = format!("message.max.bytes={LOWERED_MESSAGE_BYTES}");
    alter_broker_config(&cluster, &["--entity-default"], &lowered);
    let state = cluster.state();
    assert_eq!(
        state.broker_configs.cluster_default.get("message.max.bytes"),
        Some(&LOWERED_MESSAGE_BYTES.to_string()),
        "the cluster-wide value is in the cluster state"
    );
    produce_until_each_leader_answers(&cluster, topic, OVER_LIMIT_VALUE_BYTES, MESSAGE_TOO_LARGE);

    let own = OWN_CONFIG_BROKER.to_string();
    let raised = format!("message.max.bytes={MESSAGE_BYTES_MAX_DEFAULT}");
    alter_broker_config(&cluster, &["--entity-name", &own], &raised);
    let expected = |leader| if leader == OWN_CONFIG_BROKER { 0 } else { MESSAGE_TOO_LARGE };
    produce_until_leaders_answer(&cluster, topic, OVER_LIMIT_VALUE_BYTES, expected);

    // Killed and restarted, the broker reads its value back from the state: once it leads
    // again, it takes the big record and the others still refuse it.
    cluster.kill9(OWN_CONFIG_BROKER);
    cluster.wait_state("the killed broker out of every in-sync set", CONFIG_SPREAD_MAX, |s| {
        s.topics[topic].partitions.iter().all(|p| !p.isr.contains(&OWN_CONFIG_BROKER))
    });
    cluster.restart_stopped();
    let state = cluster.wait_all_in_sync("the killed broker restarted");
    if !state.topics[topic].partitions.iter().any(|p| p.leader == OWN_CONFIG_BROKER) {
        let follower = state.topics[topic]
            .partitions
            .iter()
            .position(|p| p.isr.contains(&OWN_CONFIG_BROKER))
            .expect("the restarted broker is in an in-sync set");
        cluster.move_leader(topic, follower as i32, OWN_CONFIG_BROKER);
    }
    produce_until_leaders_answer(&cluster, topic, OVER_LIMIT_VALUE_BYTES, expected);
}

/// The value size of the records `fill` writes.
const FILL_VALUE_BYTES: usize = 1000;

/// Fills `topic`-0 at its leader with `batches` batches of `records` records of
/// `FILL_VALUE_BYTES` each, one acks=all produce per batch, each acknowledged; returns the
/// connection to the leader (correlation ids up to `batches` used). Stamped now: old
/// timestamps would let time retention delete closed segments.
fn fill(cluster: &Cluster, leader: i32, topic: &str, batches: usize, records: usize) -> wire::Conn {
    let mut conn = cluster.connect(leader);
    let value = vec![b'v'; FILL_VALUE_BYTES];
    let records: Vec<(Option<&[u8]>, &[u8])> =
        (0..records).map(|_| (None, value.as_slice())).collect();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    let batch = wire::record_batch(&records, now_ms.as_millis() as i64, wire::NO_PRODUCER);
    for n in 0..batches {
        let (error, _) = wire::produce(&mut conn, n as i32 + 1, topic, 0, &batch);
        assert_eq!(error, 0, "batch {n} to broker {leader}");
    }
    conn
}

/// Records the trimmed topic gets (batches of `fill`'s records): three 1 MiB segments.
const TRIM_BATCHES: usize = 30;
const TRIM_RECORDS_PER_BATCH: usize = 100;
/// Where DeleteRecords moves the log start: inside the second segment.
const TRIM_BEFORE: i64 = 1500;
/// Where the second DeleteRecords, with a follower frozen, moves it.
const TRIM_AGAIN: i64 = 1600;
/// That request's timeout: well within the frozen follower's time in the in-sync set.
const TRIM_TIMEOUT_MS: i32 = 1000;
const REQUEST_TIMED_OUT: i16 = 7;

/// Issue 18: DeleteRecords moves the leader's log start; every follower takes it from its
/// next fetch and deletes the segments wholly below it, and the answer waits for that, as
/// Kafka's does: it comes once every in-sync replica's log start reached the offset, or
/// REQUEST_TIMED_OUT with the lowest one when a frozen follower cannot report. A new leader
/// after a failover serves the same log start.
#[test]
fn deleted_records_stay_deleted_on_every_replica_and_after_failover() {
    let cluster = Cluster::up("trim");
    let topic = "trimmed";
    cluster.create_topic(topic, 1, &["segment.bytes=1048576"]);
    let state = cluster.wait_all_in_sync("topic created");
    let leader = partition(&state, topic, 0).leader;
    let mut conn = fill(&cluster, leader, topic, TRIM_BATCHES, TRIM_RECORDS_PER_BATCH);
    let end = (TRIM_BATCHES * TRIM_RECORDS_PER_BATCH) as i64;
    let first_segment =
        |id: i32| cluster.partition_dir(id, topic, 0).join(format!("{:020}.log", 0));
    for id in 0..BROKERS {
        assert!(first_segment(id).exists(), "broker {id} has the first segment before");
    }
    let mut id = 100;
    let mut next = || {
        id += 1;
        id
    };
    assert_eq!(wire::delete_records(&mut conn, next(), topic, 0, end + 1).0, OFFSET_OUT_OF_RANGE);
    assert_eq!(wire::delete_records(&mut conn, next(), topic, 0, TRIM_BEFORE), (0, TRIM_BEFORE));
    assert_eq!(wire::list_offset(&mut conn, next(), topic, 0, -2), (0, TRIM_BEFORE));
    for id in 0..BROKERS {
        // The answer came after every replica's log start passed the first segment.
        assert!(!first_segment(id).exists(), "broker {id} deleted the segment before the answer");
    }
    // A frozen follower cannot take the new log start: the answer times out with the low
    // watermark it holds back, while the leader's own log start has moved.
    let frozen = (0..BROKERS).find(|id| *id != leader).expect("a follower");
    cluster.freeze(frozen);
    let answer =
        wire::delete_records_within(&mut conn, next(), topic, 0, TRIM_AGAIN, TRIM_TIMEOUT_MS);
    cluster.thaw(frozen);
    assert_eq!(answer, (REQUEST_TIMED_OUT, TRIM_BEFORE), "with broker {frozen} frozen");
    assert_eq!(wire::list_offset(&mut conn, next(), topic, 0, -2), (0, TRIM_AGAIN));
    // Thawed, it catches up: asked again, the answer waits for it.
    assert_eq!(wire::delete_records(&mut conn, next(), topic, 0, TRIM_AGAIN), (0, TRIM_AGAIN));
    cluster.kill9(leader);
    let state = cluster.wait_state("a new leader", Duration::from_secs(10), |s| {
        let p = partition(s, topic, 0);
        p.leader >= 0 && p.leader != leader
    });
    let new_leader = partition(&state, topic, 0).leader;
    let mut conn = cluster.connect(new_leader);
    wait_until(
        &format!("broker {new_leader}, the new leader, answering the log start {TRIM_AGAIN}"),
        Duration::from_secs(10),
        || {
            let answer = wire::list_offset(&mut conn, next(), topic, 0, -2);
            (answer != (NOT_LEADER_OR_FOLLOWER, -1)).then_some(answer)
        },
    );
    assert_eq!(wire::list_offset(&mut conn, next(), topic, 0, -2), (0, TRIM_AGAIN));
    assert_eq!(wire::list_offset(&mut conn, next(), topic, 0, -1), (0, end));
}

/// Partitions of the topic one DeleteRecords request trims at once.
const TRIM_MANY_PARTITIONS: i32 = 8;
/// That request's timeout: each partition's followers report their new log start within
/// about one long poll (500 ms), so this holds one wait for all, not one after another.
const TRIM_MANY_TIMEOUT_MS: i32 = 2500;

/// Issue 18: DeleteRecords of many partitions deletes them all before it waits, so their
/// followers take the new log starts together and one request timeout covers them all, as
/// Kafka's delayed DeleteRecords does.
#[test]
fn one_delete_records_of_many_partitions_waits_for_them_together() {
    let cluster = Cluster::up("trim-many");
    let topic = "trimmed-many";
    cluster.create_topic(topic, TRIM_MANY_PARTITIONS, &["min.insync.replicas=1"]);
    cluster.wait_all_in_sync("topic created");
    for index in 0..TRIM_MANY_PARTITIONS {
        cluster.move_leader(topic, index, 0);
    }
    let mut conn = cluster.connect(0);
    let value = vec![b'm'; 100];
    let batch =
        wire::record_batch(&[(None, value.as_slice())], 1_700_000_000_000, wire::NO_PRODUCER);
    for index in 0..TRIM_MANY_PARTITIONS {
        wait_until(&format!("broker 0 leading {topic}-{index}"), Duration::from_secs(10), || {
            let (error, _) = wire::produce(&mut conn, 1, topic, index, &batch);
            (error == 0).then_some(())
        });
    }
    let before: Vec<(i32, i64)> = (0..TRIM_MANY_PARTITIONS).map(|index| (index, 1)).collect();
    let answers = wire::delete_records_of(&mut conn, 2, topic, &before, TRIM_MANY_TIMEOUT_MS);
    let expected: Vec<(i32, i16, i64)> =
        (0..TRIM_MANY_PARTITIONS).map(|index| (index, 0, 1)).collect();
    assert_eq!(answers, expected, "every partition trimmed on every replica within the timeout");
}

/// How often the controller runs the preferred-leader rebalance in the test that waits
/// for it (Kafka's default is 5 minutes).
const REBALANCE_INTERVAL_MS: &str = "1000";
/// How long a preferred leader may take to lead again once it is back in sync.
const REBALANCE_WAIT: Duration = Duration::from_secs(20);

/// Kills the leader of `topic`-0 (its preferred replica, as placement made it), waits for
/// the failover, restarts it and waits until it is back in every in-sync set. Returns it.
fn fail_over_and_return_the_first_leader(cluster: &Cluster, topic: &str) -> i32 {
    let state = cluster.state();
    let victim = partition(&state, topic, 0).leader;
    assert_eq!(
        victim,
        partition(&state, topic, 0).replicas[0],
        "placement's preferred leader leads"
    );
    cluster.kill9(victim);
    cluster.wait_state("a new leader", Duration::from_secs(10), |s| {
        let p = partition(s, topic, 0);
        p.leader >= 0 && p.leader != victim
    });
    cluster.restart_stopped();
    cluster.wait_all_in_sync(&format!("broker {victim} restarted"));
    victim
}

/// Whether every partition of `topic` is led by its preferred (first) replica.
fn preferred_lead(state: &ClusterState, topic: &str) -> bool {
    state.topics[topic].partitions.iter().all(|p| p.leader == p.replicas[0])
}

/// Issue 18: after a failover and the broker's return, leaders stay where the failover put
/// them until an operator asks for the preferred ones (`kafka-leader-election`, ElectLeaders)
/// when the automatic rebalance is off; with it on, the controller gives them back itself.
#[test]
fn preferred_leaders_return_on_request_and_by_themselves_after_a_failover() {
    let topic = "elected";
    let manual = Cluster::up_in(
        fresh_dir("elect-manual"),
        None,
        &["--shards", "2", "--auto-leader-rebalance-enable", "false"],
    );
    manual.create_topic(topic, BROKERS, &[]);
    manual.wait_all_in_sync("topic created");
    let victim = fail_over_and_return_the_first_leader(&manual, topic);
    let state = manual.state();
    assert_ne!(partition(&state, topic, 0).leader, victim, "no rebalance while it is off");
    let out = crate::support::kafka::kafka_tool_ok(
        &[
            "kafka-leader-election",
            "--bootstrap-server",
            &manual.bootstrap,
            "--election-type",
            "PREFERRED",
            "--all-topic-partitions",
        ],
        None,
    );
    assert!(out.contains(&format!("{topic}-0")), "the election of {topic}-0 is reported:\n{out}");
    let state = manual
        .wait_state("preferred leaders", Duration::from_secs(10), |s| preferred_lead(s, topic));
    assert_eq!(partition(&state, topic, 0).leader, victim);
    // Asked again: nothing needs electing.
    let out = crate::support::kafka::kafka_tool_ok(
        &[
            "kafka-leader-election",
            "--bootstrap-server",
            &manual.bootstrap,
            "--election-type",
            "PREFERRED",
            "--topic",
            topic,
            "--partition",
            "0",
        ],
        None,
    );
    assert!(out.contains("Valid replica already elected"), "{out}");
    // Fjord's own command does the same.
    let victim = fail_over_and_return_the_first_leader(&manual, topic);
    let out = fjord_ok(&["cluster", "rebalance-leaders", "-b", &manual.bootstrap]);
    assert!(out.contains(&format!("{topic}-0: preferred leader elected")), "{out}");
    let state = manual
        .wait_state("preferred leaders", Duration::from_secs(10), |s| preferred_lead(s, topic));
    assert_eq!(partition(&state, topic, 0).leader, victim);
    manual.down();

    let auto = Cluster::up_in(
        fresh_dir("elect-auto"),
        None,
        &["--shards", "2", "--leader-imbalance-check-interval-ms", REBALANCE_INTERVAL_MS],
    );
    auto.create_topic(topic, BROKERS, &[]);
    auto.wait_all_in_sync("topic created");
    let victim = fail_over_and_return_the_first_leader(&auto, topic);
    let state = auto.wait_state("preferred leaders, by the controller", REBALANCE_WAIT, |s| {
        preferred_lead(s, topic)
    });
    assert_eq!(partition(&state, topic, 0).leader, victim);
}

/// Issue 18: a topic with `unclean.leader.election.enable=true` whose in-sync replicas are
/// all dead gets an out-of-sync replica as leader from the controller by itself and takes
/// records again; a topic without it stays offline until an in-sync replica returns, and then
/// that one leads.
#[test]
fn the_controller_elects_an_out_of_sync_leader_only_where_the_topic_allows_it() {
    let mut cluster = Cluster::up("unclean");
    let (dirty, clean) = ("dirty", "clean");
    // One in-sync replica is enough to take acks=all records on the dirty topic.
    let dirty_configs = ["unclean.leader.election.enable=true", "min.insync.replicas=1"];
    cluster.create_topic(dirty, 1, &dirty_configs);
    cluster.create_topic(clean, 1, &[]);
    cluster.wait_all_in_sync("topics created");
    for topic in [dirty, clean] {
        cluster.move_leader(topic, 0, 0);
    }
    // 1 and 2 die: 0 alone is in sync. Then 0 dies, and 1 comes back out of sync.
    cluster.kill9(1);
    cluster.kill9(2);
    cluster.wait_state("broker 0 alone in sync", Duration::from_secs(15), |s| {
        [dirty, clean].iter().all(|t| {
            let p = partition(s, t, 0);
            p.leader == 0 && p.isr == [0]
        })
    });
    cluster.kill9(0);
    cluster.start_alone(1);
    let state =
        cluster.wait_state("broker 1 leading the dirty topic", Duration::from_secs(20), |s| {
            let p = partition(s, dirty, 0);
            p.leader == 1 && p.isr == [1]
        });
    assert_eq!(partition(&state, clean, 0).leader, -1, "the clean topic is offline");
    produce_until_each_leader_answers(&cluster, dirty, 10, 0);
    let elected =
        cluster.try_wait_state(Duration::from_secs(2), |s| partition(s, clean, 0).leader >= 0);
    assert!(elected.is_err(), "an out-of-sync replica was elected for the clean topic");
    cluster.restart_stopped();
    let state =
        cluster.wait_state("broker 0 leading the clean topic", Duration::from_secs(20), |s| {
            partition(s, clean, 0).leader >= 0
        });
    assert_eq!(partition(&state, clean, 0).leader, 0, "the last in-sync replica leads again");
    cluster.wait_all_in_sync("every broker back");
    produce_until_each_leader_answers(&cluster, clean, 10, 0);
}

/// How long a reassignment may take to complete: the added replica copies what the
/// partition holds and catches up with a producer writing, around a broker's restart.
const REASSIGNMENT_WAIT: Duration = Duration::from_secs(60);

/// Issue 18: `kafka-reassign-partitions` moves a partition from replicas {a, b} to {b, c}
/// while an idempotent acks=all producer writes and a broker of the partition is killed in
/// the middle and restarted: the new replica copies the log through the follower fetch and
/// joins the in-sync set, the controller completes the move, the removed replica deletes its
/// data, `--verify` reports it done, and every acknowledged record is there exactly once.
#[test]
fn a_reassignment_moves_a_partition_under_load_through_a_broker_kill() {
    let cluster = Cluster::up("reassign");
    let topic = "moved";
    fjord_ok(&["topic", "create", topic, "-b", &cluster.bootstrap, "-p", "2", "-r", "2"]);
    let state = cluster.wait_state("the topic with leaders", Duration::from_secs(10), |s| {
        s.topics.get(topic).is_some_and(|t| t.partitions.iter().all(|p| p.leader >= 0))
    });
    let before = partition(&state, topic, 0).replicas.clone();
    let (removed, kept) = (before[0], before[1]);
    let added = (0..BROKERS).find(|id| !before.contains(id)).expect("a broker without a replica");
    let producer = VerifiedProducer::start(&cluster, topic, 120);
    let acks_path = producer.acks_path.clone();
    wait_for_acks(&acks_path, 200, "before the reassignment");

    let work = TempDir::new("reassign");
    let plan = work.path().join("plan.json");
    let json = format!(
        r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"replicas":[{kept},{added}]}}]}}"#
    );
    std::fs::write(&plan, json).expect("write the reassignment plan");
    let plan_arg = plan.display().to_string();
    let tool = |action: &str| {
        crate::support::kafka::kafka_tool_ok(
            &[
                "kafka-reassign-partitions",
                "--bootstrap-server",
                &cluster.bootstrap,
                "--reassignment-json-file",
                &plan_arg,
                action,
            ],
            None,
        )
    };
    let out = tool("--execute");
    assert!(out.contains("Successfully started partition reassignment"), "{out}");
    // A broker of the partition dies in the middle of the copy, and comes back.
    let victim = partition(&cluster.state(), topic, 0).leader;
    cluster.kill9(victim);
    cluster.wait_state("a new leader while the move runs", Duration::from_secs(10), |s| {
        let p = partition(s, topic, 0);
        p.leader >= 0 && p.leader != victim
    });
    cluster.restart_stopped();
    let state = cluster.wait_state("the reassignment completed", REASSIGNMENT_WAIT, |s| {
        let p = partition(s, topic, 0);
        !p.reassigning() && p.replicas == vec![kept, added] && p.isr.len() == 2 && p.leader >= 0
    });
    eprintln!(
        "partition 0 moved from {before:?} to {:?} (victim {victim})",
        partition(&state, topic, 0)
    );
    let out = tool("--verify");
    assert!(out.contains(&format!("Reassignment of partition {topic}-0 is completed")), "{out}");
    wait_until(
        &format!("broker {removed} removing its replica of {topic}-0"),
        Duration::from_secs(10),
        || (!cluster.partition_dir(removed, topic, 0).exists()).then_some(()),
    );
    let acked = ack_count(&acks_path);
    wait_for_acks(&acks_path, acked + 200, "after the reassignment");
    producer.stop_and_check(&cluster, &[victim]);
    wait_until(
        &format!("replicas {kept} and {added} of {topic}-0 holding the same bytes"),
        Duration::from_secs(10),
        || (cluster.log_bytes(kept, topic, 0) == cluster.log_bytes(added, topic, 0)).then_some(()),
    );
}

/// The throttled reassignment's partition: batches of `fill`'s records (4 MB).
const THROTTLED_BATCHES: usize = 40;
const THROTTLED_RECORDS_PER_BATCH: usize = 100;
/// `kafka-reassign-partitions --throttle`, bytes per second: 4 MB take at least 3 s at it
/// (a bucket holds one second's worth), where unthrottled they copy in well under one.
const THROTTLE_BYTES_PER_SEC: &str = "1000000";
const THROTTLED_COPY_MIN: Duration = Duration::from_secs(2);
const THROTTLE_CONFIGS: [&str; 2] =
    ["leader.replication.throttled.replicas", "follower.replication.throttled.replicas"];
const THROTTLE_RATES: [&str; 2] =
    ["leader.replication.throttled.rate", "follower.replication.throttled.rate"];

/// Issue 18: `kafka-reassign-partitions --throttle` sets the replication throttles (the
/// rates on the brokers, the replica lists on the topic) and the added replica copies the
/// log at that rate, not faster; `--verify` after completion removes every throttle, and
/// both replicas hold the same bytes.
#[test]
fn a_throttled_reassignment_copies_at_the_throttled_rate_and_verify_removes_the_throttles() {
    let cluster = Cluster::up("throttle");
    let topic = "throttled";
    let create = ["topic", "create", topic, "-b", &cluster.bootstrap, "-p", "1", "-r", "1"];
    fjord_ok(&[&create[..], &["-c", "min.insync.replicas=1"]].concat());
    let state = cluster.wait_state("the topic with a leader", Duration::from_secs(10), |s| {
        s.topics.get(topic).is_some_and(|t| t.partitions.iter().all(|p| p.leader >= 0))
    });
    let leader = partition(&state, topic, 0).leader;
    let added = (0..BROKERS).find(|id| *id != leader).expect("another broker");
    fill(&cluster, leader, topic, THROTTLED_BATCHES, THROTTLED_RECORDS_PER_BATCH);

    let work = TempDir::new("throttle");
    let plan = work.path().join("plan.json");
    let json = format!(
        r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"replicas":[{leader},{added}]}}]}}"#
    );
    std::fs::write(&plan, json).expect("write the reassignment plan");
    let plan_arg = plan.display().to_string();
    let tool = |actions: &[&str]| {
        let mut args = vec![
            "kafka-reassign-partitions",
            "--bootstrap-server",
            &cluster.bootstrap,
            "--reassignment-json-file",
            &plan_arg,
        ];
        args.extend_from_slice(actions);
        crate::support::kafka::kafka_tool_ok(&args, None)
    };
    let out = tool(&["--execute", "--throttle", THROTTLE_BYTES_PER_SEC]);
    let started = Instant::now();
    assert!(out.contains("Successfully started partition reassignment"), "{out}");
    let state = cluster.state();
    let config = &state.topics[topic].config;
    for name in THROTTLE_CONFIGS {
        assert!(config.contains_key(name), "the tool set {name}: {config:?}\n{out}");
    }
    for id in [leader, added] {
        let own = state.broker_configs.per_broker.get(&id.to_string());
        for name in THROTTLE_RATES {
            let rate = own.and_then(|values| values.get(name)).map(String::as_str);
            assert_eq!(rate, Some(THROTTLE_BYTES_PER_SEC), "broker {id}'s {name}");
        }
    }
    cluster.wait_state("the reassignment completed", REASSIGNMENT_WAIT, |s| {
        let p = partition(s, topic, 0);
        !p.reassigning() && p.isr.len() == 2
    });
    let took = started.elapsed();
    eprintln!("4 MB copied in {took:?} under a {THROTTLE_BYTES_PER_SEC} B/s throttle");
    assert!(took >= THROTTLED_COPY_MIN, "the copy took {took:?}: not throttled");

    let out = tool(&["--verify"]);
    assert!(out.contains(&format!("Reassignment of partition {topic}-0 is completed")), "{out}");
    let state = cluster.state();
    let config = &state.topics[topic].config;
    for name in THROTTLE_CONFIGS {
        assert!(!config.contains_key(name), "--verify removed {name}: {config:?}\n{out}");
    }
    for name in THROTTLE_RATES {
        let left: Vec<_> =
            state.broker_configs.per_broker.values().filter(|v| v.contains_key(name)).collect();
        assert!(left.is_empty(), "--verify removed every {name}: {left:?}\n{out}");
    }
    wait_until(
        &format!("replicas {leader} and {added} of {topic}-0 holding the same bytes"),
        Duration::from_secs(10),
        || {
            (cluster.log_bytes(leader, topic, 0) == cluster.log_bytes(added, topic, 0))
                .then_some(())
        },
    );
}

#[test]
fn fjord_topic_reassign_moves_a_partition_and_cancel_needs_one_in_progress() {
    let cluster = Cluster::up("cli-reassign");
    let topic = "relocated";
    fjord_ok(&["topic", "create", topic, "-b", &cluster.bootstrap, "-p", "1", "-r", "1"]);
    let state = cluster.wait_state("the topic with a leader", Duration::from_secs(10), |s| {
        s.topics.get(topic).is_some_and(|t| t.partitions.iter().all(|p| p.leader >= 0))
    });
    let from = partition(&state, topic, 0).leader;
    let to = (from + 1) % BROKERS;
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    // One replica, under the cluster's min.insync.replicas of 2: acks=1.
    let produce = ["produce", "-t", topic, "-b", &cluster.bootstrap, "--acks", "1"];
    let out = run_fjord_with_input(&produce, &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let to_arg = to.to_string();
    let out = fjord_ok(&[
        "topic",
        "reassign",
        topic,
        "-b",
        &cluster.bootstrap,
        "-p",
        "0",
        "--replicas",
        &to_arg,
    ]);
    assert!(out.contains(&format!("moving {topic}-0 to replicas [{to}]")), "{out}");
    cluster.wait_state("the partition on its new broker", Duration::from_secs(30), |s| {
        let p = partition(s, topic, 0);
        p.replicas == vec![to] && p.leader == to && !p.reassigning()
    });
    wait_until(&format!("broker {from} removing its replica"), Duration::from_secs(10), || {
        (!cluster.partition_dir(from, topic, 0).exists()).then_some(())
    });
    // The CLI asks whichever broker it reaches first, which may not have applied the move
    // yet (a tick): it is asked again.
    let consume =
        ["consume", "-t", topic, "-b", &cluster.bootstrap, "--from", "beginning", "--exit-at-end"];
    let consumed = wait_until("a consume from the new leader", Duration::from_secs(10), || {
        let out = fjord(&consume);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(consumed, lines, "every record moved with the partition");
    let cancel =
        fjord(&["topic", "reassign", topic, "-b", &cluster.bootstrap, "-p", "0", "--cancel"]);
    assert_eq!(cancel.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cancel.stderr).contains("NO_REASSIGNMENT_IN_PROGRESS"));
}

/// Back-to-back commits a test times: enough that one missed wake-up per commit adds up to
/// seconds.
const COMMITS_TIMED: i64 = 10;

/// A commit is acknowledged once the offsets partition's followers have it (acks=all), so
/// the coordinator's append must wake their parked fetches as a produce does. Without the
/// wake-up, a cluster with no produce traffic answered every commit only when a follower's
/// long poll (FOLLOWER_FETCH_WAIT_MS) ran out: a consumer committing synchronously fell
/// behind for good (the nemesis suite's stalled python consumer). The bound is half a wait
/// per commit: a missed wake-up costs a whole one, so this catches it on any machine.
#[test]
fn an_offset_commit_wakes_the_followers_instead_of_waiting_out_their_long_poll() {
    let cluster = Cluster::up("commitwake");
    let topic = "quiet";
    cluster.create_topic(topic, 1, &[]);
    let state = cluster.wait_all_in_sync("topic created");
    let group = (0..100)
        .map(|n| format!("quiet-{n}"))
        .find(|g| java_string_hash(g) >= 0)
        .expect("a group id");
    let offsets_partition = (java_string_hash(&group) as usize % OFFSETS_PARTITIONS) as i32;
    let offsets = partition(&state, "__consumer_offsets", offsets_partition);
    assert_eq!(offsets.isr.len(), BROKERS as usize, "{offsets:?}");
    let mut conn = cluster.connect(offsets.leader);
    // The first commit may load the group; the followers' fetches are parked after it.
    assert_eq!(wire::offset_commit(&mut conn, 1, &group, topic, 0, 0), 0, "first commit");
    std::thread::sleep(Duration::from_millis(FOLLOWER_FETCH_WAIT_MS / 5));
    let started = Instant::now();
    for n in 1..=COMMITS_TIMED {
        let error = wire::offset_commit(&mut conn, 1 + n as i32, &group, topic, 0, n);
        assert_eq!(error, 0, "commit {n} of {group} to broker {}", offsets.leader);
    }
    let elapsed = started.elapsed();
    let bound = Duration::from_millis(COMMITS_TIMED as u64 * FOLLOWER_FETCH_WAIT_MS / 2);
    assert!(
        elapsed < bound,
        "{COMMITS_TIMED} commits took {elapsed:?} (bound {bound:?}): the followers of \
         __consumer_offsets-{offsets_partition} were not woken by the commits"
    );
}

/// Issue 23: the coordinator's broker dies while a group consumes and commits. The new
/// coordinator loads the group (generation, leader, members, assignments) from
/// `__consumer_offsets`, so the members carry on in their generation: no rebalance (no
/// assignment callback after the group settled), every commit after the move accepted, and
/// no record delivered twice. Before group metadata was stored, the new coordinator knew no
/// member: heartbeats and commits got UNKNOWN_MEMBER_ID and the group rebalanced.
#[test]
fn a_group_keeps_its_generation_across_coordinator_failover() {
    const MEMBERS: usize = 2;
    const PARTITIONS: i32 = 2;
    const PER_PARTITION: u64 = 40;
    let cluster = Cluster::up("groupmeta");
    let topic = "steady";
    cluster.create_topic(topic, PARTITIONS, &[]);
    let group = (0..100)
        .map(|n| format!("steady-{n}"))
        .find(|g| java_string_hash(g) >= 0)
        .expect("a group id");
    let offsets_partition = (java_string_hash(&group) as usize % OFFSETS_PARTITIONS) as i32;
    let work = TempDir::new("steady");
    let stop = work.path().join("stop").display().to_string();
    let members: Vec<Background> = (0..MEMBERS)
        .map(|_| {
            let args = [&cluster.bootstrap, topic, &group, "--stop-file", &stop, "--max-s", "100"];
            Background::spawn("steady_member.py", &args)
        })
        .collect();
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); MEMBERS];
    let read_until =
        |lines: &mut Vec<Vec<String>>, what: &str, done: &dyn Fn(&[Vec<String>]) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(45);
            while !done(lines) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}: {lines:#?}");
                for (member, out) in members.iter().zip(lines.iter_mut()) {
                    while let Some(line) = member.next_line(Duration::from_millis(POLL_MS)) {
                        out.push(line);
                    }
                }
            }
        };
    let count = |out: &[String], tag: &str| {
        out.iter().filter(|l| l.split('\t').next() == Some(tag)).count()
    };
    // The group settles: each member holds one partition.
    read_until(&mut lines, "the group to settle", &|lines| {
        let latest: Vec<Option<&str>> = lines
            .iter()
            .map(|out| out.iter().rev().find(|l| l.starts_with("assigned\t")).map(|l| &l[9..]))
            .collect();
        latest.iter().all(|a| a.is_some_and(|a| a != "-"))
            && latest.iter().flatten().map(|a| a.split(',').count()).sum::<usize>()
                == PARTITIONS as usize
    });
    let settled: Vec<usize> = lines.iter().map(Vec::len).collect();
    for p in 0..PARTITIONS {
        let produced =
            produce(&cluster.bootstrap, topic, p, p as u64 * PER_PARTITION, PER_PARTITION, "all");
        assert_eq!(produced, PER_PARTITION as usize);
    }
    read_until(&mut lines, "the first commits", &|lines| {
        lines.iter().map(|out| count(out, "committed")).sum::<usize>() >= 10
    });
    let coordinator = partition(&cluster.state(), "__consumer_offsets", offsets_partition).leader;
    let before_kill: Vec<usize> = lines.iter().map(|out| count(out, "committed")).collect();
    eprintln!("group {group}: offsets partition {offsets_partition}, killing coordinator broker {coordinator}");
    cluster.kill9(coordinator);
    let total = (PARTITIONS as u64 * PER_PARTITION) as usize;
    read_until(&mut lines, "every record consumed", &|lines| {
        let seen: BTreeSet<(i32, i64)> = lines
            .iter()
            .flat_map(|out| parse_messages(&out.join("\n")))
            .map(|m| (m.partition, m.offset))
            .collect();
        seen.len() >= total || lines.iter().any(|out| count(out, "commit-failed") > 0)
    });
    // What the members printed before they were told to stop: once one of them leaves,
    // the other may be handed its partitions before it sees the stop file itself.
    let before_stop: Vec<usize> = lines.iter().map(Vec::len).collect();
    std::fs::write(&stop, b"").expect("stop file");
    for (member, out) in members.into_iter().zip(lines.iter_mut()) {
        let (status, rest, stderr) = member.finish();
        out.extend(rest);
        assert!(status.success(), "member failed: {status}\n{}\n{stderr}", out.join("\n"));
    }
    for (n, out) in lines.iter().enumerate() {
        let text = out.join("\n");
        // close() revokes the assignment: only what came before the stop counts.
        let after_settle = &out[settled[n]..before_stop[n]];
        let rebalances: Vec<&String> = after_settle
            .iter()
            .take_while(|l| *l != "stopping")
            .filter(|l| l.starts_with("assigned\t") || l.starts_with("revoked\t"))
            .collect();
        assert!(
            rebalances.is_empty(),
            "member {n} rebalanced after the coordinator moved: {rebalances:?}\n{text}"
        );
        assert_eq!(count(out, "commit-failed"), 0, "member {n}: a commit was refused\n{text}");
        assert!(
            count(out, "committed") > before_kill[n],
            "member {n} committed nothing after the coordinator was killed\n{text}"
        );
    }
    let mut delivered: Vec<(i32, i64)> = lines
        .iter()
        .flat_map(|out| parse_messages(&out.join("\n")))
        .map(|m| (m.partition, m.offset))
        .collect();
    delivered.sort_unstable();
    let expected: Vec<(i32, i64)> =
        (0..PARTITIONS).flat_map(|p| (0..PER_PARTITION as i64).map(move |o| (p, o))).collect();
    assert_eq!(delivered, expected, "every record delivered exactly once");
}

/// A topic deleted and created again, with a replica that was down during the delete: the
/// returning replica must drop the old incarnation's data, never serve it as the new topic's.
#[test]
fn a_recreated_topic_never_serves_the_old_incarnations_records() {
    let cluster = Cluster::up("recreate");
    cluster.create_topic("again", 1, &[]);
    let old: String = (0..50).map(|i| format!("old-{i}\n")).collect();
    let produce = |lines: &str| {
        let args: Vec<String> =
            ["produce", "-t", "again", "--acks", "-1", "-b", cluster.bootstrap.as_str()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let out = crate::support::run_with_timeout(
            60,
            Path::new(env!("CARGO_BIN_EXE_fjord")),
            &args,
            Some(lines.as_bytes()),
        );
        assert!(out.status.success(), "produce: {}", String::from_utf8_lossy(&out.stderr));
    };
    produce(&old);
    // Stop a follower (it misses the delete), delete and re-create the topic, produce anew.
    let state = cluster.state();
    let leader = state.topics["again"].partitions[0].leader;
    let follower = *state.topics["again"].partitions[0]
        .replicas
        .iter()
        .find(|r| **r != leader)
        .expect("a follower");
    signal(cluster.running_pid(follower), libc::SIGKILL);
    cluster.wait_state("the follower leaves the in-sync set", Duration::from_secs(10), |s| {
        !s.topics["again"].partitions[0].isr.contains(&follower)
    });
    fjord_ok(&["topic", "delete", "again", "-b", &cluster.bootstrap]);
    cluster.wait_state("the topic is gone", Duration::from_secs(10), |s| {
        !s.topics.contains_key("again")
    });
    let live: Vec<String> = cluster
        .file
        .brokers
        .iter()
        .filter(|b| b.id != follower)
        .map(|b| b.address.clone())
        .collect();
    let live = live.join(",");
    let created = fjord(&["topic", "create", "again", "-p", "1", "-r", "2", "-b", &live]);
    assert!(created.status.success(), "re-create: {}", String::from_utf8_lossy(&created.stderr));
    let fresh: String = (0..5).map(|i| format!("new-{i}\n")).collect();
    produce(&fresh);
    // The old follower returns; wherever it holds a replica it must not hold old records.
    cluster.restart_stopped();
    // The returning broker drops the old directory when it starts (it hosts no replica of
    // the new topic) or replaces it (if it does); wait for either, with a deadline.
    wait_until(
        "the returning broker no longer holds the deleted topic's records",
        Duration::from_secs(10),
        || {
            let gone = cluster
                .log_bytes_if_present(follower, "again", 0)
                .is_none_or(|bytes| !String::from_utf8_lossy(&bytes).contains("old-"));
            gone.then_some(())
        },
    );
    let state = cluster.state();
    let replicas = state.topics["again"].partitions[0].replicas.clone();
    for id in replicas {
        let bytes = cluster.log_bytes(id, "again", 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("old-"), "broker {id} holds records of the deleted topic");
    }
    if let Some(bytes) = cluster.log_bytes_if_present(follower, "again", 0) {
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(!text.contains("old-"), "the returning broker kept the deleted topic's records");
    }
    let consumed = fjord_ok(&["consume", "-t", "again", "-e", "-b", &cluster.bootstrap]);
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        vec!["new-0", "new-1", "new-2", "new-3", "new-4"]
    );
}

#[test]
fn a_produce_waiting_on_a_frozen_follower_does_not_hold_back_the_next_request() {
    // One connection sends an acks=all produce to a partition whose follower is frozen (it
    // waits for the follower or for the in-sync set to shrink) and right behind it an acks=1
    // produce to a partition of the same leader without followers. The second one appends
    // while the first still waits (group commit needs exactly this), and its answer still
    // comes after the first one's. The probe also checks that an acks=1 append to a
    // partition whose in-sync set is the leader alone moves the high watermark at once.
    use crate::support::wire::{self, Conn, Decoder, Encoder, Received, NO_PRODUCER};
    let cluster = Cluster::up("pipelining");
    cluster.create_topic("waits", 1, &[]);
    let leader = wait_until("a leader for waits-0", Duration::from_secs(10), || {
        cluster.describe_leaders("waits")?.get(&0).copied().filter(|l| *l >= 0)
    });
    cluster.wait_all_in_sync("every replica of waits-0 in sync before one is frozen");
    fjord_ok(&["topic", "create", "free", "-b", &cluster.bootstrap, "-p", "3", "-r", "1"]);
    let (free_partition, _) =
        wait_until("a partition of free led by the same broker", Duration::from_secs(10), || {
            cluster.describe_leaders("free")?.into_iter().find(|(_, l)| *l == leader)
        });
    // A follower that is not the controller: freezing the controller would stall more than
    // this one partition.
    let controller = cluster.state().controller;
    let follower =
        (0..BROKERS).find(|id| *id != leader && *id != controller).expect("a third broker");
    eprintln!("leader {leader}, controller {controller}, freezing follower {follower}");
    let address: SocketAddr = cluster.address(leader).parse().expect("broker address");
    let body = |topic: &str, partition: i32, acks: i16| {
        let batch = wire::record_batch(&[(None, b"pipelined")], 1_700_000_000_000, NO_PRODUCER);
        let mut body = Encoder::new();
        body.null_string().i16(acks).i32(30_000);
        body.i32(1).string(topic).i32(1).i32(partition).bytes(&batch);
        body.0
    };
    cluster.freeze(follower);
    let mut conn = Conn::connect(address);
    let mut burst = wire::request_frame(wire::PRODUCE, 3, 1, &body("waits", 0, -1));
    burst.extend(wire::request_frame(wire::PRODUCE, 3, 2, &body("free", free_partition, 1)));
    conn.send(&burst).expect("send both requests");
    let mut probe = Conn::connect(address);
    wait_until("the second request's record in free", Duration::from_secs(5), || {
        (wire::list_offset(&mut probe, 9, "free", free_partition, -1) == (0, 1)).then_some(())
    });
    // The first request is still waiting: nothing has come back on its connection.
    conn.stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let early = conn.stream.peek(&mut byte);
    conn.stream.set_nonblocking(false).expect("blocking");
    if !matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
        let answer = conn.receive();
        panic!("an answer arrived before the frozen follower let the first request go: {early:?} then {answer:?}");
    }
    cluster.thaw(follower);
    for expected in [1, 2] {
        let Received::Frame(frame) = conn.receive() else {
            panic!("connection closed before answer {expected}")
        };
        assert_eq!(Decoder::new(&frame).i32(), expected, "answers in request order");
    }
}

/// Faults the nemesis campaign injects, one per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// kill -9 the leader of a partition of the topic.
    KillLeader,
    /// kill -9 the controller.
    KillController,
    /// SIGSTOP the controller until others took over, then SIGCONT.
    PauseController,
    /// SIGSTOP the leader of a partition until others took over, then SIGCONT.
    PauseLeader,
    /// kill -9 two brokers at once.
    KillTwo,
    /// kill -9 a leader and restart it at once, three times in a row.
    Flap,
    /// kill -9 the coordinator of the campaign's consumer group (the leader of its
    /// `__consumer_offsets` partition).
    KillCoordinator,
    /// Hundreds of slow-loris connections and 16 announcing maximal frames sent slowly,
    /// against every broker, while acknowledgements must keep flowing.
    Hogs,
    /// Fill the brokers' file system past the free-space floor until produce is refused,
    /// then free it: acknowledgements resume without a restart.
    DiskFull,
}

const FAULTS: [Fault; 9] = [
    Fault::KillLeader,
    Fault::KillController,
    Fault::PauseController,
    Fault::PauseLeader,
    Fault::KillTwo,
    Fault::Flap,
    Fault::KillCoordinator,
    Fault::Hogs,
    Fault::DiskFull,
];

/// Rounds of the nemesis campaign in a default test run (CI): every fault kind once.
/// `FJORD_NEMESIS_ROUNDS` sets more for the long run (docs/reliability.md).
const NEMESIS_ROUNDS_DEFAULT: u64 = FAULTS.len() as u64;
/// How long a round waits for new leaders after its fault.
const NEMESIS_FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// The campaign's file system (a loop device, so the disk can be filled): the whole
/// campaign writes a few tens of MiB, far below it.
const NEMESIS_FS_BYTES: u64 = 192 * 1024 * 1024;
/// The brokers' free-space floor (`--log-dir-free-bytes-min`) on that file system.
const NEMESIS_FREE_BYTES_MIN: u64 = 32 * 1024 * 1024;
/// How long a full disk must refuse produce before it is freed: long enough for every
/// broker to measure the free space again (at least every second).
const DISK_FULL_HOLD: Duration = Duration::from_secs(3);
/// Acknowledgements have stopped once none came for this long (longer than the free-space
/// measurement interval).
const DISK_FULL_QUIET: Duration = Duration::from_millis(1_500);
/// How long produce may take to be refused once the disk is filled, and to resume once it
/// is freed (free space is measured at least every second).
const DISK_FULL_WAIT: Duration = Duration::from_secs(20);
/// Clients announcing maximal frames in a `Hogs` round (the issue's sixteen).
const NEMESIS_HOGS: usize = 16;
/// Slow-loris connections in a `Hogs` round, spread over the brokers, within the test
/// process's open-file limit (tests run side by side in one process).
const NEMESIS_LORIS_MAX: usize = 600;
/// How long a round waits for the group consumer to commit again after its fault.
const CONSUMER_COMMIT_WAIT: Duration = Duration::from_secs(30);
/// How long the group consumer may take to have read every acknowledged record once the
/// producer stopped.
const CONSUMER_CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// Seconds the campaign's clients may run beyond their sending time (flushing, catching up).
const CLIENT_SLACK_S: u64 = 120;

/// Kafka's KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;

/// One line of nemesis_consumer.py's log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConsumerEvent {
    Seen {
        key: String,
        seq: u64,
    },
    /// An acknowledged commit (`fetched: false`) or the coordinator's answer to an
    /// OffsetFetch (`fetched: true`).
    Committed {
        partition: i32,
        offset: i64,
        fetched: bool,
    },
    CommitError(String),
    FetchError(String),
    Rebalance,
}

fn read_consumer_log(path: &Path) -> Vec<ConsumerEvent> {
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        // A line cut short while the consumer writes it does not parse: skipped.
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["seen", _, _, key, seq] => {
                    Some(ConsumerEvent::Seen { key: key.to_string(), seq: seq.parse().ok()? })
                }
                [tag @ ("committed" | "fetched"), p, o] => Some(ConsumerEvent::Committed {
                    partition: p.parse().ok()?,
                    offset: o.parse().ok()?,
                    fetched: *tag == "fetched",
                }),
                ["commit-error", e] => Some(ConsumerEvent::CommitError(e.to_string())),
                ["fetch-error", e] => Some(ConsumerEvent::FetchError(e.to_string())),
                ["assigned" | "revoked", _] => Some(ConsumerEvent::Rebalance),
                _ => None,
            }
        })
        .collect()
}

/// nemesis_consumer.py reading the campaign's topic as a member of a consumer group, with
/// its log of what it saw, committed and fetched.
struct GroupConsumer {
    _work: TempDir,
    group: String,
    log_path: PathBuf,
    stop_path: PathBuf,
    process: Background,
}

impl GroupConsumer {
    fn start(cluster: &Cluster, topic: &str, partitions: i32, max_s: u64) -> GroupConsumer {
        // A group whose Java hash is not negative: abs() and a sign mask then agree on its
        // offsets partition.
        let group = (0..100)
            .map(|n| format!("readers-{n}-of-the-nemesis"))
            .find(|g| java_string_hash(g) >= 0)
            .expect("a group id");
        let work = TempDir::new("group-consumer");
        let log_path = work.path().join("log");
        let stop_path = work.path().join("stop");
        let (log_arg, stop_arg) = (log_path.display().to_string(), stop_path.display().to_string());
        let (partitions, max_s_arg) = (partitions.to_string(), max_s.to_string());
        let process = Background::spawn_for(
            "nemesis_consumer.py",
            &[
                &cluster.bootstrap,
                topic,
                &group,
                "--log-file",
                &log_arg,
                "--stop-file",
                &stop_arg,
                "--partitions",
                &partitions,
                "--max-s",
                &max_s_arg,
            ],
            max_s + CLIENT_SLACK_S,
        );
        GroupConsumer { _work: work, group, log_path, stop_path, process }
    }

    /// The `__consumer_offsets` partition of the group; its leader is the coordinator.
    fn offsets_partition(&self) -> i32 {
        (java_string_hash(&self.group) as usize % OFFSETS_PARTITIONS) as i32
    }

    fn events(&self) -> Vec<ConsumerEvent> {
        read_consumer_log(&self.log_path)
    }

    /// Answers from the group's coordinator so far: acknowledged commits and OffsetFetch
    /// answers (the consumer fetches every second whether or not it read anything).
    fn commits(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, ConsumerEvent::Committed { .. })).count()
    }

    /// Waits until the coordinator answered the consumer more than `more_than` times;
    /// returns the count, or `None` after `CONSUMER_COMMIT_WAIT`.
    fn wait_for_commits(&self, more_than: usize) -> Option<usize> {
        let deadline = Instant::now() + CONSUMER_COMMIT_WAIT;
        loop {
            let n = self.commits();
            if n > more_than {
                return Some(n);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Waits until the consumer has read every record of `acks` (key, seq), then stops it;
    /// records a problem for what it never read and for committed offsets that went back.
    fn stop_and_check(
        self,
        acks: &BTreeMap<(String, u64), (i32, i64)>,
        problems: &mut Vec<String>,
    ) {
        let unread = |events: &[ConsumerEvent]| {
            let seen: BTreeSet<(String, u64)> = events
                .iter()
                .filter_map(|e| match e {
                    ConsumerEvent::Seen { key, seq } => Some((key.clone(), *seq)),
                    _ => None,
                })
                .collect();
            acks.iter()
                .filter(|(record, _)| !seen.contains(*record))
                .map(|((key, seq), (p, o))| (*p, *o, format!("{key}:{seq} at {p}:{o}")))
                .collect::<Vec<_>>()
        };
        let caught_up = try_until(CONSUMER_CATCH_UP_WAIT, || unread(&self.events()).is_empty());
        std::fs::write(&self.stop_path, b"stop").expect("write the consumer's stop file");
        let (status, _, stderr) = self.process.finish();
        assert!(status.success(), "group consumer: {status}\n{stderr}");
        let events = read_consumer_log(&self.log_path);
        // At least once: the group never committed past a record its consumer did not read.
        let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
        for event in &events {
            if let ConsumerEvent::Committed { partition, offset, .. } = event {
                let highest = committed.entry(*partition).or_insert(*offset);
                *highest = (*highest).max(*offset);
            }
        }
        let (skipped, behind): (Vec<_>, Vec<_>) = unread(&events)
            .into_iter()
            .partition(|(p, o, _)| committed.get(p).is_some_and(|c| o < c));
        if !skipped.is_empty() {
            let first: Vec<&String> = skipped.iter().take(10).map(|u| &u.2).collect();
            let text = format!(
                "the group committed past {} acknowledged records its consumer never read (committed {committed:?}); first: {first:?}",
                skipped.len()
            );
            problem(problems, text);
        }
        if !caught_up {
            let first: Vec<&String> = behind.iter().take(10).map(|u| &u.2).collect();
            let text = format!(
                "the group consumer had not read {} of {} acknowledged records {CONSUMER_CATCH_UP_WAIT:?} after the producer stopped (committed {committed:?}); first: {first:?}\nits stderr:\n{stderr}",
                behind.len(),
                acks.len()
            );
            problem(problems, text);
        }
        for backwards in committed_backwards(&events) {
            problem(problems, backwards);
        }
        let count = |f: fn(&ConsumerEvent) -> bool| events.iter().filter(|e| f(e)).count();
        eprintln!(
            "group consumer: {} records read, {} commits acknowledged, {} offset fetches, {} commit errors, {} fetch errors, {} assignments and revocations",
            count(|e| matches!(e, ConsumerEvent::Seen { .. })),
            count(|e| matches!(e, ConsumerEvent::Committed { fetched: false, .. })),
            count(|e| matches!(e, ConsumerEvent::Committed { fetched: true, .. })),
            count(|e| matches!(e, ConsumerEvent::CommitError(_))),
            count(|e| matches!(e, ConsumerEvent::FetchError(_))),
            count(|e| matches!(e, ConsumerEvent::Rebalance)),
        );
    }
}

/// Every place where a partition's committed offset, as acknowledged to the consumer or
/// fetched from the coordinator, is below one acknowledged or fetched before it. (The
/// consumer commits and fetches one request at a time, so its log is in order.)
fn committed_backwards(events: &[ConsumerEvent]) -> Vec<String> {
    let mut highest: BTreeMap<i32, (i64, bool)> = BTreeMap::new();
    let mut found = Vec::new();
    let what = |fetched: bool| if fetched { "fetched" } else { "committed" };
    for event in events {
        let ConsumerEvent::Committed { partition, offset, fetched } = event else { continue };
        match highest.get(partition) {
            Some((before, how)) if offset < before => found.push(format!(
                "partition {partition}: {} offset {offset} after {} {before}",
                what(*fetched),
                what(*how)
            )),
            _ => {
                highest.insert(*partition, (*offset, *fetched));
            }
        }
    }
    found
}

/// What a round's fault did: the brokers it stopped (restarted at the end of the round).
struct Injected {
    hit: Vec<i32>,
}

/// The campaign's cluster (on a file system of its own), clients and findings.
struct Campaign {
    cluster: Cluster,
    topic: &'static str,
    partitions: i32,
    producer: VerifiedProducer,
    consumer: GroupConsumer,
    rng: fjord_storage::sim::Rng,
    acked: usize,
    problems: Vec<String>,
}

impl Campaign {
    fn acks_path(&self) -> PathBuf {
        self.producer.acks_path.clone()
    }

    /// Waits for more than `more` acknowledgements beyond the last count; returns how long.
    fn wait_for_more_acks(&mut self, more: usize, why: &str) -> Duration {
        let started = Instant::now();
        self.acked = wait_for_acks(&self.acks_path(), self.acked + more, why);
        started.elapsed()
    }

    fn inject(&mut self, round: u64, fault: Fault, before: &ClusterState) -> Injected {
        let index = self.rng.below(self.partitions as u64) as i32;
        let leader = partition(before, self.topic, index).leader;
        let cluster = &self.cluster;
        let hit = match fault {
            Fault::KillLeader | Fault::KillController | Fault::KillCoordinator => {
                let victim = match fault {
                    Fault::KillLeader => leader,
                    Fault::KillController => before.controller,
                    _ => {
                        partition(before, "__consumer_offsets", self.consumer.offsets_partition())
                            .leader
                    }
                };
                cluster.kill9(victim);
                vec![victim]
            }
            Fault::PauseLeader | Fault::PauseController => {
                let victim = if fault == Fault::PauseLeader { leader } else { before.controller };
                cluster.freeze(victim);
                vec![victim]
            }
            Fault::KillTwo => {
                let spared = self.rng.below(BROKERS as u64) as i32;
                let two: Vec<i32> = (0..BROKERS).filter(|id| *id != spared).collect();
                for victim in &two {
                    cluster.kill9(*victim);
                }
                two
            }
            Fault::Flap => {
                for _ in 0..3 {
                    cluster.kill9(leader);
                    cluster.restart_stopped();
                    std::thread::sleep(Duration::from_millis(200 + self.rng.below(800)));
                }
                vec![leader]
            }
            Fault::Hogs => {
                self.hogs(round);
                Vec::new()
            }
            Fault::DiskFull => {
                self.disk_full(round);
                Vec::new()
            }
        };
        Injected { hit }
    }

    /// Slow-loris and maximal-frame clients against every broker while acknowledgements
    /// and the consumer's commits must go on.
    fn hogs(&mut self, round: u64) {
        use crate::support::hog::{open_files_limit, slow_loris, Hog, HogPace};
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let addrs: Vec<SocketAddr> = (0..BROKERS)
            .map(|id| self.cluster.address(id).parse().expect("broker address"))
            .collect();
        let loris_count = (open_files_limit() / 8).clamp(100, NEMESIS_LORIS_MAX);
        let loris = slow_loris(&addrs, loris_count);
        // 2.5 times the minimum frame rate: never dropped for trickling.
        let pace = HogPace {
            announced: fjord::config::REQUEST_BYTES_MAX_DEFAULT as i32,
            burst: 1024,
            per_tick: fjord::server::FRAME_RATE_MIN_BYTES / 4,
            tick: Duration::from_secs(1),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<Hog> =
            (0..NEMESIS_HOGS).map(|i| Hog::start(addrs[i % addrs.len()], pace, &stop)).collect();
        let commits = self.consumer.commits();
        let waited = self.wait_for_more_acks(
            50,
            &format!(
                "round {round}: beside {loris_count} slow-loris and {NEMESIS_HOGS} hog connections"
            ),
        );
        let committed = self.consumer.wait_for_commits(commits);
        let connected = hogs.iter().filter(|h| h.still_connected()).count();
        eprintln!(
            "nemesis round {round}: Hogs: 50 acknowledgements in {waited:?} beside {loris_count} slow-loris and {NEMESIS_HOGS} hog connections ({connected} still connected)"
        );
        if committed.is_none() {
            let text =
                format!("round {round}: Hogs: the group's coordinator did not answer the consumer within {CONSUMER_COMMIT_WAIT:?}");
            problem(&mut self.problems, text);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for hog in hogs {
            hog.join();
        }
        drop(loris);
    }

    /// Fills the file system until produce is refused at the floor, holds it full, frees
    /// it, and measures how long acknowledgements take to resume (no restart).
    fn disk_full(&mut self, round: u64) {
        let fs = self.cluster.fs.as_ref().expect("the campaign's cluster is on a loop device");
        let filler = fs.mount().join("filler");
        let free = fs.free_bytes();
        fs.fill(&filler, free.saturating_sub(NEMESIS_FREE_BYTES_MIN / 2));
        let filled = Instant::now();
        let free_full = fs.free_bytes();
        let refused =
            try_until(DISK_FULL_WAIT, || probe_produce(&self.cluster) == KAFKA_STORAGE_ERROR);
        let refused_after = filled.elapsed();
        // Each log measures the free space at least every second: acknowledgements of what
        // the others took meanwhile stop within about that.
        let stalled = try_until(DISK_FULL_WAIT, || {
            let n = ack_count(&self.acks_path());
            std::thread::sleep(DISK_FULL_QUIET);
            ack_count(&self.acks_path()) == n
        });
        let stalled_after = filled.elapsed();
        let acked_full = ack_count(&self.acks_path());
        std::thread::sleep(DISK_FULL_HOLD);
        let acked_held = ack_count(&self.acks_path());
        std::fs::remove_file(&filler).expect("remove the filler file");
        let freed = Instant::now();
        let resumed = try_until(DISK_FULL_WAIT, || ack_count(&self.acks_path()) > acked_held + 50);
        let resumed_after = freed.elapsed();
        eprintln!(
            "nemesis round {round}: DiskFull: {free} bytes free filled to {free_full} (floor {NEMESIS_FREE_BYTES_MIN}); a probe's produce refused after {refused_after:?}, acknowledgements stopped (none for {DISK_FULL_QUIET:?}) {stalled_after:?} after the fill; 50 more acknowledged {resumed_after:?} after space returned",
        );
        let mut broken = Vec::new();
        if !refused {
            broken.push(format!("a probe's produce not refused within {DISK_FULL_WAIT:?} of the disk filling past the floor"));
        }
        if !stalled || acked_held > acked_full {
            broken.push(format!(
                "{} acknowledgements while the disk was past the floor",
                acked_held - acked_full
            ));
        }
        if !resumed {
            broken.push(format!(
                "acknowledgements did not resume within {DISK_FULL_WAIT:?} of space returning"
            ));
        }
        for text in broken {
            problem(&mut self.problems, format!("round {round}: DiskFull: {text}"));
        }
        self.acked = ack_count(&self.acks_path());
    }
}

/// Produces one record to `spill`-0 at its leader; returns the error code (0 if taken).
fn probe_produce(cluster: &Cluster) -> i16 {
    let leader = partition(&cluster.state(), "spill", 0).leader;
    if leader < 0 {
        return -1;
    }
    let batch = wire::record_batch(&[(None, b"probe")], 1_700_000_000_000, wire::NO_PRODUCER);
    wire::produce(&mut cluster.connect(leader), 1, "spill", 0, &batch).0
}

#[test]
fn nemesis_campaign_loses_duplicates_and_reorders_nothing_acknowledged() {
    let seed = fjord_storage::sim::seed("nemesis");
    let rounds = std::env::var("FJORD_NEMESIS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(NEMESIS_ROUNDS_DEFAULT);
    eprintln!("nemesis: {rounds} rounds, FJORD_SEED={seed}");
    let started = Instant::now();
    let floor = NEMESIS_FREE_BYTES_MIN.to_string();
    let fs = LoopFs::new("nemesis-fs", NEMESIS_FS_BYTES);
    let shards = SHARDS.to_string();
    let cluster =
        Cluster::up_on("nemesis", fs, &["--shards", &shards, "--log-dir-free-bytes-min", &floor]);
    let (topic, partitions) = ("ledger", 4);
    cluster.create_topic(topic, partitions, &[]);
    // The disk-full probe's topic: one record per probe.
    cluster.create_topic("spill", 1, &[]);
    let max_s = 60 + 40 * rounds;
    let producer = VerifiedProducer::start(&cluster, topic, max_s);
    let consumer = GroupConsumer::start(&cluster, topic, partitions, max_s);
    let mut campaign = Campaign {
        cluster,
        topic,
        partitions,
        producer,
        consumer,
        rng: fjord_storage::sim::Rng::new(seed),
        acked: 0,
        problems: Vec::new(),
    };
    campaign.acked = wait_for_acks(&campaign.acks_path(), 200, "before the first fault");
    let mut victims = Vec::new();
    // The first rounds go through the faults in turn (a default run covers every kind),
    // then the seed picks.
    for round in 0..rounds {
        let fault = if round < FAULTS.len() as u64 {
            FAULTS[((seed.wrapping_add(round)) % FAULTS.len() as u64) as usize]
        } else {
            FAULTS[campaign.rng.below(FAULTS.len() as u64) as usize]
        };
        victims.extend(nemesis_round(&mut campaign, round, fault));
    }
    let Campaign { cluster, producer, consumer, mut problems, .. } = campaign;
    let acks: BTreeMap<(String, u64), (i32, i64)> = read_deliveries(&producer.acks_path)
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Ack { key, seq, partition, offset } => {
                Some(((key, seq), (partition, offset)))
            }
            Delivery::Err { .. } => None,
        })
        .collect();
    producer.stop_and_check(&cluster, &victims);
    consumer.stop_and_check(&acks, &mut problems);
    check_replicas_identical(&cluster, topic, partitions, &mut problems);
    eprintln!("nemesis: {rounds} rounds done in {:?}", started.elapsed());
    assert!(problems.is_empty(), "nemesis (FJORD_SEED={seed}):\n{}", problems.join("\n"));
}

/// One round: waits for full in-sync sets, injects `fault`, waits for new leaders (and a
/// new controller when it was hit), checks that acknowledgements (and, for a coordinator
/// kill, the consumer's commits) go on while one broker is out, restarts what is down and
/// waits for the in-sync sets to recover. Returns the brokers it stopped.
fn nemesis_round(campaign: &mut Campaign, round: u64, fault: Fault) -> Vec<i32> {
    let before = campaign.cluster.wait_all_in_sync(&format!("round {round}: before {fault:?}"));
    let commits = campaign.consumer.commits();
    let started = Instant::now();
    let Injected { hit } = campaign.inject(round, fault, &before);
    // Every partition a stopped broker led, with a live in-sync replica left, gets a new
    // leader (a flapping broker is back already: nothing to wait for).
    if fault != Fault::Flap && !hit.is_empty() {
        wait_for_new_leaders(campaign, round, fault, &before, &hit, started);
    }
    // Acknowledgements go on while one broker is down or stopped (two down leave fewer
    // in-sync replicas than acks=all may need: checked after the restart instead).
    // A stopped broker's in-flight requests hang until the client's socket timeout (60 s
    // in librdkafka), and its queue for those partitions holds up the rest: acknowledgements
    // after a pause are checked once it is resumed (and by the stopped-controller test,
    // with fresh clients, during it).
    let paused = matches!(fault, Fault::PauseLeader | Fault::PauseController);
    if hit.len() == 1 && !paused {
        campaign.wait_for_more_acks(50, &format!("round {round}: {fault:?} on {hit:?}"));
    }
    if fault == Fault::KillCoordinator {
        match campaign.consumer.wait_for_commits(commits) {
            Some(_) => eprintln!(
                "nemesis round {round}: KillCoordinator on {hit:?}: the group's new coordinator answered the consumer {:?} after the kill",
                started.elapsed()
            ),
            None => problem(
                &mut campaign.problems,
                format!("round {round}: KillCoordinator on {hit:?}: the group's coordinator did not answer the consumer within {CONSUMER_COMMIT_WAIT:?} of the kill"),
            ),
        }
    }
    if paused {
        campaign.cluster.thaw(hit[0]);
    }
    campaign.cluster.restart_stopped();
    if let Err(state) = campaign.cluster.try_wait_state(ISR_RECOVERY_MAX, all_in_sync) {
        problem(
            &mut campaign.problems,
            format!(
                "round {round}: {fault:?}: not back in sync within {ISR_RECOVERY_MAX:?}: {}",
                not_in_sync(&state)
            ),
        );
    }
    campaign.wait_for_more_acks(50, &format!("round {round}: after {fault:?}"));
    for backwards in committed_backwards(&campaign.consumer.events()) {
        problem(&mut campaign.problems, format!("round {round}: {fault:?}: {backwards}"));
    }
    hit
}

/// Waits until every partition a broker in `hit` led (with a live in-sync replica left)
/// has a new leader, and a new controller if the controller was hit; prints how long it
/// took or records a problem.
fn wait_for_new_leaders(
    campaign: &mut Campaign,
    round: u64,
    fault: Fault,
    before: &ClusterState,
    hit: &[i32],
    started: Instant,
) {
    let led: Vec<(String, i32, i32)> = hit
        .iter()
        .flat_map(|victim| led_by(before, *victim))
        .filter(|(t, i, _)| partition(before, t, *i).isr.iter().any(|r| !hit.contains(r)))
        .collect();
    let controller_lost = hit.contains(&before.controller)
        && matches!(fault, Fault::KillController | Fault::PauseController);
    let reelected_all = |s: &ClusterState| {
        // A controller that was hit is replaced too.
        (!controller_lost || (s.controller >= 0 && !hit.contains(&s.controller)))
            && led.iter().all(|(t, i, epoch)| {
                s.partition(t, *i).is_some_and(|p| {
                    p.leader >= 0 && !hit.contains(&p.leader) && p.leader_epoch > *epoch
                })
            })
    };
    match campaign.cluster.try_wait_state(NEMESIS_FAILOVER_WAIT, reelected_all) {
        Ok(_) => eprintln!(
            "nemesis round {round}: {fault:?} on {hit:?}: {} partitions (and the controller, if hit) led elsewhere after {:?}",
            led.len(),
            started.elapsed()
        ),
        Err(state) => problem(
            &mut campaign.problems,
            format!("round {round}: {fault:?} on {hit:?}: no new leaders within {NEMESIS_FAILOVER_WAIT:?}: {}", toml::to_string(&state).unwrap_or_default()),
        ),
    }
}

/// Replicas end byte-identical: every replica's log is the leader's, once followers caught up.
fn check_replicas_identical(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    problems: &mut Vec<String>,
) {
    let state = cluster.state();
    for index in 0..partitions {
        let replicas = partition(&state, topic, index).replicas.clone();
        let identical = try_until(ISR_RECOVERY_MAX, || {
            let logs: Vec<Vec<u8>> =
                replicas.iter().map(|id| cluster.log_bytes(*id, topic, index)).collect();
            logs.windows(2).all(|pair| pair[0] == pair[1])
        });
        if !identical {
            problem(
                problems,
                format!("{topic}-{index}: replicas {replicas:?} hold different bytes"),
            );
        }
    }
}

#[test]
fn every_replica_of_a_compacted_partition_cleans_its_own_log() {
    let shards = SHARDS.to_string();
    let args = ["--shards", shards.as_str(), "--retention-check-interval-ms", "200"];
    let cluster = Cluster::up_in(fresh_dir("compacted"), None, &args);
    let configs = ["cleanup.policy=compact", "segment.ms=100", "min.cleanable.dirty.ratio=0.01"];
    cluster.create_topic("kept", 1, &configs);
    // Ten bursts of 200 updates over 20 keys, apart enough for the segments to roll
    // between them (on the leader as it appends, on the followers as they copy).
    let produce = |lines: String| {
        crate::support::kcat_ok(
            &["-P", "-b", &cluster.bootstrap, "-t", "kept", "-K:", "-X", "acks=all"],
            Some(lines.as_bytes()),
        )
    };
    let value = "v".repeat(100);
    for burst in 0..10 {
        produce((0..200).map(|i| format!("k{}:{burst}-{i}-{value}\n", i % 20)).collect());
        std::thread::sleep(Duration::from_millis(200));
    }
    produce("last:one\n".to_string());
    // About 250 KB were written to each replica; cleaned, the 20 keys' last values and the
    // active segment are a small part of that. Followers clean their own copies: only the
    // leader's log changes through fetches, never through another replica's cleaner.
    for id in 0..BROKERS {
        let cleaned =
            try_until(Duration::from_secs(60), || cluster.log_bytes(id, "kept", 0).len() < 60_000);
        let size = cluster.log_bytes(id, "kept", 0).len();
        assert!(cleaned, "broker {id}'s replica holds {size} bytes: not cleaned");
        let cleaned_here = try_until(Duration::from_secs(30), || {
            let log = std::fs::read_to_string(cluster.dir.join(format!("broker-{id}.log")));
            plain(&log.unwrap_or_default())
                .lines()
                .any(|line| line.contains(" compacted ") && line.contains("partition=kept-0"))
        });
        assert!(cleaned_here, "broker {id} logged no pass of its own over kept-0");
    }
    // Whichever replica leads, a consumer from the start gets each key's last value.
    let read = crate::support::kcat_ok(
        &["-C", "-b", &cluster.bootstrap, "-t", "kept", "-e", "-f", "%k=%s\n"],
        None,
    );
    let text = String::from_utf8_lossy(&read).to_string();
    for key in 0..20 {
        let values: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix(&format!("k{key}="))).collect();
        assert_eq!(values.len(), 1, "k{key}: {values:?}");
        assert!(values[0].starts_with(&format!("9-{}", 180 + key)), "k{key}: {values:?}");
    }
}

/// Transactions across brokers: the coordinator of an id is the leader of its
/// `__transaction_state` partition, the data partitions' leaders are spread over the
/// brokers, and markers go to them with WriteTxnMarkers. A read_committed consumer sees
/// exactly the committed records, and a consume-transform-produce loop commits its offsets
/// in its transactions, as on one broker (`transactions.rs`).
#[test]
fn transactions_commit_and_abort_across_brokers() {
    let cluster = Cluster::up("txn");
    let out = python_ok("transactions.py", &["commit-abort", &cluster.bootstrap, "cluster"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["committed\t75", "uncommitted\t125"]);
    let out = python_ok("transactions.py", &["send-offsets", &cluster.bootstrap, "cluster-eos"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["out\t100", "committed\t100"]);
    let state = cluster.state();
    let leaders: BTreeSet<i32> =
        (0..3).map(|index| partition(&state, "cluster-a", index).leader).collect();
    assert!(leaders.len() > 1, "the data partitions' leaders are spread: {leaders:?}");
}

/// A transaction open when its coordinator's broker is killed: the broker that takes the
/// id's `__transaction_state` partition over replays it, finds the transaction open, and
/// commits it when the producer (which finds the new coordinator) asks; the markers reach
/// every partition, whichever broker leads it now.
#[test]
fn an_open_transaction_is_committed_through_the_coordinator_that_takes_over() {
    let cluster = Cluster::up("txn-failover");
    let prefix = "held";
    let held = crate::transactions::HeldOpen::start(&cluster.bootstrap, prefix);
    // The coordinator: the leader of the id's partition of `__transaction_state`.
    let index = txn_state_partition(&format!("{prefix}-tx"));
    let state =
        cluster.wait_state("the transaction state partition in sync", ISR_RECOVERY_MAX, |s| {
            partition(s, "__transaction_state", index).isr.len() >= 2
        });
    let coordinator = partition(&state, "__transaction_state", index).leader;
    cluster.kill9(coordinator);
    cluster.wait_state("a new coordinator", Duration::from_secs(30), |s| {
        let leader = partition(s, "__transaction_state", index).leader;
        leader >= 0 && leader != coordinator
    });
    held.commit("");
    cluster.restart_stopped();
}

/// The partition of `__transaction_state` that holds `transactional_id` (Kafka's
/// `partitionFor`, 50 partitions).
fn txn_state_partition(transactional_id: &str) -> i32 {
    let hash = java_string_hash(transactional_id);
    if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs() as i32 % 50
    }
}

/// A consume-transform-produce loop (confluent-kafka, `eos_loop.py ctp-loop`: read topic A
/// read_committed, write topic B and the consumer's offsets in one transaction each 50
/// records, `exactly_once::Loop`) runs while brokers are killed with SIGKILL, each inside an
/// open transaction: the leader of a partition of B, then the transaction coordinator's
/// broker, then the leader of a partition of A. Each is restarted once its partitions have
/// new leaders. The loop retries what its client may retry and aborts (rewinding to the
/// group's committed offsets) what needs an abort, as an application does; B ends with
/// every input exactly once, read_committed.
#[test]
fn a_consume_transform_produce_loop_writes_every_record_once_through_broker_kills() {
    use crate::exactly_once::{assert_every_input_once, setup_loop, Loop};
    let cluster = Cluster::up("txn-ctp-kills");
    let prefix = "ctp";
    let (source, sink) = (format!("{prefix}-a"), format!("{prefix}-b"));
    setup_loop(&cluster.bootstrap, prefix, "3");
    let mut app = Loop::spawn(&cluster.bootstrap, prefix);
    // (committed inputs after which, which broker to kill).
    let kills: [(u64, &str); 3] =
        [(300, "sink leader"), (900, "coordinator"), (1400, "source leader")];
    for (after, which) in kills {
        let committed = app.open_after(after);
        let state = cluster.state();
        let victim = match which {
            "sink leader" => partition(&state, &sink, 0).leader,
            "coordinator" => {
                let index = txn_state_partition(&format!("{prefix}-tx"));
                partition(&state, "__transaction_state", index).leader
            }
            _ => partition(&state, &source, 1).leader,
        };
        eprintln!("killing the {which} (broker {victim}) with {committed} inputs committed");
        cluster.kill9(victim);
        cluster.wait_state(
            "new leaders for the killed broker's partitions",
            ISR_RECOVERY_MAX,
            |s| s.topics.values().flat_map(|t| &t.partitions).all(|p| p.leader != victim),
        );
        cluster.restart_stopped();
        cluster.wait_all_in_sync(&format!("broker {victim} restarted"));
    }
    eprintln!("aborted transactions: {:?}", app.aborts());
    app.finish();
    assert_every_input_once(&cluster.bootstrap, &sink);
}
