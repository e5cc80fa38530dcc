//! The integration-test harness: a real `fjord` process per test, third-party clients run
//! as child processes, and a small raw Kafka wire client for requests no client would send.
//!
//! Invariants: every broker binds 127.0.0.1 on a free port and owns a fresh data directory
//! under `std::env::temp_dir()`, removed when the `TestBroker` drops; every child process
//! (broker, kcat, python) runs under a timeout, so a hung broker fails a test instead of
//! hanging the suite. When a test panics, the broker's stderr is printed to help diagnose.

#![allow(dead_code)] // Each test module uses a different part of the harness.

pub(crate) mod apps;
pub(crate) mod hog;
pub(crate) mod kafka;
pub(crate) mod loop_fs;
pub(crate) mod matrix;
pub(crate) mod wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a broker may take to print its listening line.
pub(crate) const BROKER_START_MS_MAX: u64 = 10_000;
/// How long a SIGTERM'd broker may take to exit: its shutdown drains requests for at most
/// 10 s (`SHUTDOWN_DRAIN_MS_MAX`), plus closing the logs.
pub(crate) const BROKER_STOP_MS_MAX: u64 = 20_000;
/// Longest a single kcat run may take (the `timeout` command kills it after this).
pub(crate) const KCAT_SECONDS_MAX: u64 = 60;
/// Longest a single python client run may take.
pub(crate) const PYTHON_SECONDS_MAX: u64 = 120;
/// Lines of broker stderr printed when a test fails.
const STDERR_TAIL_LINES_MAX: usize = 80;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, unique across processes and runs.
fn fresh_dir(label: &str) -> PathBuf {
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").subsec_nanos();
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("fjord-test-{label}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Sends `signal` to `child`, which is spawned and not yet reaped (the `Child` is held), so
/// its pid cannot have been reused.
pub(crate) fn send_signal(child: &Child, signal: libc::c_int) {
    fjord_storage::io::send_signal(child.id(), signal).unwrap_or_else(|e| panic!("{e}"));
}

/// How often `wait_until` asks again.
pub(crate) const WAIT_POLL_MS: u64 = 20;

/// Polls `probe` every `WAIT_POLL_MS` until it returns `Some`, or panics naming `what` once
/// `timeout` has passed.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(WAIT_POLL_MS));
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running (or stopped) `fjord serve` process with its own data directory.
pub(crate) struct TestBroker {
    /// Holds the data dir and the stderr logs; removed on drop.
    root: PathBuf,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    addr: SocketAddr,
    /// How many processes have been started on this data dir: one stderr file each.
    generation: u32,
}

impl TestBroker {
    /// Starts a broker with default settings on a fresh data dir.
    pub(crate) fn start(label: &str) -> TestBroker {
        TestBroker::start_with(label, &[])
    }

    /// Starts a broker with extra `fjord serve` flags (kept for restarts).
    pub(crate) fn start_with(label: &str, extra_args: &[&str]) -> TestBroker {
        let root = fresh_dir(label);
        let data_dir = root.join("data");
        TestBroker::start_in(root, data_dir, extra_args)
    }

    /// Starts a broker on `data_dir` (a file system a test made), its logs in a fresh
    /// directory of its own.
    pub(crate) fn start_on(label: &str, data_dir: PathBuf, extra_args: &[&str]) -> TestBroker {
        TestBroker::start_in(fresh_dir(label), data_dir, extra_args)
    }

    fn start_in(root: PathBuf, data_dir: PathBuf, extra_args: &[&str]) -> TestBroker {
        let mut broker = TestBroker {
            root,
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            addr: "127.0.0.1:0".parse().expect("address"),
            generation: 0,
        };
        broker.spawn();
        broker
    }

    fn stderr_path(&self, generation: u32) -> PathBuf {
        self.root.join(format!("broker-{generation}.stderr"))
    }

    /// Where the next (re)start's stderr will be written.
    pub(crate) fn next_stderr_path(&self) -> PathBuf {
        self.stderr_path(self.generation + 1)
    }

    fn spawn(&mut self) {
        self.spawn_on("127.0.0.1:0".to_string());
    }

    fn spawn_on(&mut self, listen: String) {
        assert!(self.child.is_none(), "spawn with a broker still running");
        self.generation += 1;
        let stderr =
            std::fs::File::create(self.stderr_path(self.generation)).expect("create stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn fjord");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let line = read_first_line(stdout, Duration::from_millis(BROKER_START_MS_MAX));
        let Some(line) = line else {
            let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "broker did not print its listening line within {BROKER_START_MS_MAX} ms (exit status: {status:?})\n{}",
                self.stderr_tail()
            );
        };
        let addr = line
            .strip_prefix("fjord: listening on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        self.addr = addr;
    }

    /// `host:port` for clients.
    pub(crate) fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    /// Panics (with the broker's stderr) if the broker process has exited.
    pub(crate) fn assert_alive(&mut self) {
        let child = self.child.as_mut().expect("broker was started");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("broker exited unexpectedly with {status}\n{}", self.stderr_tail());
        }
    }

    /// The exit status if the broker process has exited (it is then reaped).
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// SIGTERM, wait, and assert a clean exit (status 0).
    pub(crate) fn stop(&mut self) {
        self.stop_with_signal(libc::SIGTERM);
    }

    /// Sends `signal` (SIGTERM or SIGINT), waits, and asserts exit status 0.
    pub(crate) fn stop_with_signal(&mut self, signal: libc::c_int) {
        let mut child = self.child.take().expect("stop: broker not running");
        send_signal(&child, signal);
        let status = wait_timeout(&mut child, Duration::from_millis(BROKER_STOP_MS_MAX));
        let Some(status) = status else {
            send_signal(&child, libc::SIGKILL);
            let _ = child.wait();
            panic!(
                "broker did not exit within {BROKER_STOP_MS_MAX} ms of signal {signal}\n{}",
                self.stderr_tail()
            );
        };
        assert_eq!(
            status.code(),
            Some(0),
            "broker exit after signal {signal}: {status}\n{}",
            self.stderr_tail()
        );
    }

    /// SIGKILL: no chance to flush or checkpoint anything.
    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: broker not running");
        send_signal(&child, libc::SIGKILL);
        let status = child.wait().expect("wait after SIGKILL");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}"
        );
    }

    /// Starts the broker again on the same data dir (stopping it first if it runs). The port
    /// may change: use `bootstrap()` after this.
    pub(crate) fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Like `restart`, but on the same port, so clients that only know the old address
    /// (their bootstrap list) reconnect by themselves.
    pub(crate) fn restart_on_same_port(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let listen = self.addr.to_string();
        self.spawn_on(listen);
    }

    /// All stderr written by every process generation so far.
    pub(crate) fn stderr(&self) -> String {
        let mut text = String::new();
        for generation in 1..=self.generation {
            let content = std::fs::read_to_string(self.stderr_path(generation)).unwrap_or_default();
            text.push_str(&format!("--- broker stderr (start #{generation}) ---\n{content}"));
        }
        text
    }

    /// The last lines of stderr, for failure messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(STDERR_TAIL_LINES_MAX);
        lines[from..].join("\n")
    }

    /// A field of /proc/<pid>/status in kB, e.g. "VmPeak".
    pub(crate) fn proc_status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"))
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "broker {} (data dir {}):\n{}",
                self.addr,
                self.data_dir.display(),
                self.stderr_tail()
            );
            if keep_on_failure() {
                eprintln!("kept {} (FJORD_KEEP_TEST_DIRS)", self.root.display());
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Reads the first stdout line within `timeout`; a thread keeps draining the pipe after it
/// so the broker never blocks (or gets SIGPIPE) writing to stdout.
fn read_first_line(stdout: ChildStdout, timeout: Duration) -> Option<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = sender.send(line);
        }
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    receiver.recv_timeout(timeout).ok().map(|l| l.trim_end().to_string())
}

// ---------------------------------------------------------------------------------------
// Child-process clients.

/// Runs `program args` under `timeout -k 5 SECONDS`, feeding `stdin`, and returns its output.
pub(crate) fn run_with_timeout(
    seconds: u64,
    program: &Path,
    args: &[String],
    stdin: Option<&[u8]>,
) -> Output {
    let mut command = Command::new("timeout");
    command.arg("-k").arg("5").arg(seconds.to_string()).arg(program).args(args);
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child =
        command.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let output = child.wait_with_output().expect("wait for child");
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if output.status.code() == Some(124) {
        panic!(
            "{} {:?} timed out after {seconds} s\nstdout (tail): {}\nstderr: {}",
            program.display(),
            args,
            tail(&String::from_utf8_lossy(&output.stdout), 20),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn describe(what: &str, output: &Output) -> String {
    format!(
        "{what}: {}\nstdout (tail):\n{}\nstderr:\n{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stdout), 30),
        tail(&String::from_utf8_lossy(&output.stderr), 60)
    )
}

/// Runs kcat; does not check its exit status.
pub(crate) fn kcat(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_with_timeout(KCAT_SECONDS_MAX, Path::new("kcat"), &args, stdin)
}

/// Runs kcat and returns its stdout; panics with everything it printed unless it exits 0.
pub(crate) fn kcat_ok(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let output = kcat(args, stdin);
    assert!(output.status.success(), "{}", describe(&format!("kcat {args:?}"), &output));
    output.stdout
}

/// The python interpreter with the client libraries: `$FJORD_PYTHON`, or the workspace venv.
/// Missing is a failure, never a skip: CI creates the venv in `.ci/run`.
pub(crate) fn python_path() -> PathBuf {
    let path = match std::env::var_os("FJORD_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    assert!(
        path.exists(),
        "python for the client tests not found at {} (set FJORD_PYTHON, or create the venv: \
         python3 -m venv .venv && .venv/bin/pip install confluent-kafka kafka-python)",
        path.display()
    );
    path
}

pub(crate) fn script_path(script: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/python")
        .join(script)
        .display()
        .to_string()
}

/// Runs `tests/clients/python/<script> args`; does not check the exit status.
pub(crate) fn python(script: &str, args: &[&str]) -> Output {
    let mut all = vec![script_path(script)];
    all.extend(args.iter().map(|s| s.to_string()));
    run_with_timeout(PYTHON_SECONDS_MAX, &python_path(), &all, None)
}

/// Runs a python helper and returns its stdout; panics with its output unless it exits 0.
pub(crate) fn python_ok(script: &str, args: &[&str]) -> String {
    let output = python(script, args);
    assert!(output.status.success(), "{}", describe(&format!("{script} {args:?}"), &output));
    String::from_utf8(output.stdout).expect("python output is UTF-8")
}

/// A python helper running in the background, its stdout delivered line by line.
pub(crate) struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl Background {
    pub(crate) fn spawn(script: &str, args: &[&str]) -> Background {
        Background::spawn_for(script, args, PYTHON_SECONDS_MAX)
    }

    /// Like `spawn`, for a helper that may run longer than `PYTHON_SECONDS_MAX` (a long
    /// campaign's clients): killed after `seconds_max`.
    pub(crate) fn spawn_for(script: &str, args: &[&str], seconds_max: u64) -> Background {
        let dir = TempDir::new("python");
        let stderr_path = dir.path().join("stderr");
        let mut child = Command::new("timeout")
            .args(["-k", "5", &seconds_max.to_string()])
            .arg(python_path())
            .arg(script_path(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn python");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = line_channel(stdout);
        Background { child, lines, stderr_path, _dir: dir }
    }

    /// The next stdout line, or `None` at end of output or after `timeout`.
    pub(crate) fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for the process to exit; returns its status, remaining stdout and its stderr.
    pub(crate) fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = self.child.wait().expect("wait for python");
        let rest: Vec<String> = self.lines.iter().collect();
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        (status, rest, stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        TempDir(fresh_dir(label))
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

/// Whether a failing test leaves its directories (data dirs, broker and client logs) in
/// place for a post-mortem: set `FJORD_KEEP_TEST_DIRS=1`.
pub(crate) fn keep_on_failure() -> bool {
    std::env::var_os("FJORD_KEEP_TEST_DIRS").is_some()
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() && keep_on_failure() {
            eprintln!("kept {} (FJORD_KEEP_TEST_DIRS)", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// The message conventions of tests/clients/python/common.py.

/// Key of generated message `i`: `k{i % keys}`, none when `keys` is 0.
pub(crate) fn key(i: u64, keys: u64) -> Option<Vec<u8>> {
    (keys > 0).then(|| format!("k{}", i % keys).into_bytes())
}

/// Value of generated message `i`: `v{i}-` padded to `size` bytes with `a + i % 26`.
pub(crate) fn value(i: u64, size: usize) -> Vec<u8> {
    let mut v = format!("v{i}-").into_bytes();
    if v.len() < size {
        v.resize(size, b'a' + (i % 26) as u8);
    }
    v
}

/// The `i` of a generated value (`v{i}-...`).
pub(crate) fn value_index(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(&value[..value.len().min(24)]).unwrap_or("");
    text.strip_prefix('v')
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "not a generated value: {:?}",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            )
        })
}

/// A consumed message (`msg` line of a python helper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

/// An acknowledged produce (`ack` line of a python helper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    pub partition: i32,
    pub offset: i64,
    pub index: u64,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text == "-" {
        return None;
    }
    assert!(text.len().is_multiple_of(2), "odd hex {text:?}");
    Some(
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
            .collect(),
    )
}

/// The `msg` lines of a consumer helper's output.
pub(crate) fn parse_messages(output: &str) -> Vec<Message> {
    output
        .lines()
        .filter(|l| l.starts_with("msg\t"))
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6, "bad msg line {line:?}");
            Message {
                partition: f[1].parse().expect("partition"),
                offset: f[2].parse().expect("offset"),
                key: unhex(f[3]),
                value: unhex(f[4]),
                timestamp: f[5].parse().expect("timestamp"),
            }
        })
        .collect()
}

/// Parses one `ack` line.
pub(crate) fn parse_ack(line: &str) -> Option<Ack> {
    let f: Vec<&str> = line.split('\t').collect();
    if f[0] != "ack" {
        return None;
    }
    assert_eq!(f.len(), 4, "bad ack line {line:?}");
    Some(Ack {
        partition: f[1].parse().expect("partition"),
        offset: f[2].parse().expect("offset"),
        index: f[3].parse().expect("index"),
    })
}

/// The `ack` lines of a producer helper's output.
pub(crate) fn parse_acks(output: &str) -> Vec<Ack> {
    output.lines().filter_map(parse_ack).collect()
}

/// Lines starting with `tag\t`, split into their remaining fields.
pub(crate) fn tagged<'a>(output: &'a str, tag: &str) -> Vec<Vec<&'a str>> {
    output
        .lines()
        .filter(|l| l.split('\t').next() == Some(tag))
        .map(|l| l.split('\t').skip(1).collect())
        .collect()
}

/// Creates a topic with confluent-kafka's AdminClient (CreateTopics).
pub(crate) fn create_topic(broker: &TestBroker, topic: &str, partitions: u32, configs: &[&str]) {
    let partitions = partitions.to_string();
    let mut args = vec!["create-topic", "--partitions", &partitions];
    for config in configs {
        args.push("--config");
        args.push(config);
    }
    let bootstrap = broker.bootstrap();
    args.extend([bootstrap.as_str(), topic]);
    let out = python_ok("ck.py", &args);
    assert_eq!(tagged(&out, "created"), vec![vec![topic, partitions.as_str()]], "{out}");
}

/// Consumes a whole topic (every partition up to its high watermark) with confluent-kafka.
pub(crate) fn consume_all(broker: &TestBroker, topic: &str, extra: &[&str]) -> Vec<Message> {
    let bootstrap = broker.bootstrap();
    let mut args = vec!["consume"];
    args.extend_from_slice(extra);
    args.extend([bootstrap.as_str(), topic]);
    parse_messages(&python_ok("ck.py", &args))
}

/// kcat -C of a whole single-partition topic with format `format`, exiting at the end.
pub(crate) fn kcat_consume(
    broker: &TestBroker,
    topic: &str,
    format: &str,
    extra: &[&str],
) -> String {
    let bootstrap = broker.bootstrap();
    let mut args = vec!["-b", bootstrap.as_str(), "-C", "-t", topic, "-e", "-q", "-f", format];
    args.extend_from_slice(extra);
    String::from_utf8(kcat_ok(&args, None)).expect("kcat output is UTF-8")
}

/// `kcat -L` output (metadata of all topics).
pub(crate) fn kcat_metadata(broker: &TestBroker) -> String {
    let bootstrap = broker.bootstrap();
    String::from_utf8(kcat_ok(&["-b", &bootstrap, "-L", "-m", "10"], None)).expect("UTF-8")
}

/// Topic name -> partition count from `kcat -L` output, without internal topics (`__*`,
/// such as `__consumer_offsets`, which the broker creates for itself).
pub(crate) fn kcat_topics(listing: &str) -> std::collections::BTreeMap<String, usize> {
    listing
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("topic \"")?;
            let (name, rest) = rest.split_once('"')?;
            let count =
                rest.trim().strip_prefix("with ")?.split_whitespace().next()?.parse().ok()?;
            Some((name.to_string(), count))
        })
        .filter(|(name, _)| !name.starts_with("__"))
        .collect()
}

/// The lines a child writes to `stdout`, read on a thread of their own as they come.
pub(crate) fn line_channel(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The `.log` segment files of a partition directory, in offset order.
pub(crate) fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// (base offset, compression codec) of every record batch stored for a partition, read from
/// its segment files (`<offset>.log`, batches back to back: base offset i64 | length i32 |
/// leader epoch i32 | magic i8 | crc u32 | attributes i16 ...). Codecs: attributes & 7, so
/// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
pub(crate) fn stored_batches(broker: &TestBroker, topic: &str, partition: i32) -> Vec<(i64, u8)> {
    let dir = broker.data_dir().join(format!("{topic}-{partition}"));
    let mut batches = Vec::new();
    for log in segment_logs(&dir) {
        let bytes = std::fs::read(&log).expect("read segment");
        let mut at = 0usize;
        while at + 23 <= bytes.len() {
            let base_offset = i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
            assert!(length > 0, "{}: batch length {length} at position {at}", log.display());
            assert_eq!(bytes[at + 16], 2, "{}: magic at position {at}", log.display());
            let codec = (u16::from_be_bytes(bytes[at + 21..at + 23].try_into().expect("2 bytes"))
                & 7) as u8;
            batches.push((base_offset, codec));
            at += 12 + length as usize;
        }
    }
    batches
}

/// The compression codec of every stored batch of a partition (see `stored_batches`).
pub(crate) fn stored_codecs(broker: &TestBroker, topic: &str, partition: i32) -> Vec<u8> {
    stored_batches(broker, topic, partition).into_iter().map(|(_, codec)| codec).collect()
}
