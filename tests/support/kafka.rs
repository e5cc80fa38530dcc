//! Apache Kafka 4.4 itself, from the jars that `tests/clients/java/kafka/setup.sh` resolves:
//! a real single-node broker (KRaft combined mode) to compare Fjord with, and Kafka's own
//! command-line tools (`kafka-topics`, `kafka-console-consumer`, ...) to run against either.
//!
//! Invariants: like `TestBroker`, a `KafkaBroker` binds 127.0.0.1 on free ports, owns a fresh
//! directory removed when it drops, and runs in a process group of its own that the drop
//! kills whole (the launcher script and its JVM). A missing classpath file is a failure that
//! names the setup script, never a skip: CI runs the script first.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{line_channel, run_with_timeout, TempDir};

/// How long the reference broker may take to print its listening line: two JVM starts
/// (storage format, then the broker), about 4 s on an idle 2-core machine, much more while
/// the rest of the suite builds and runs beside it.
pub(crate) const KAFKA_START_SECONDS_MAX: u64 = 90;
/// Longest one Kafka tool run may take (a JVM start, then usually well under a second of
/// work; the perf tests and consumers with a group take a few seconds).
pub(crate) const KAFKA_TOOL_SECONDS_MAX: u64 = 120;
/// Lines of the reference broker's log printed when a test fails.
const LOG_TAIL_LINES_MAX: usize = 60;

/// `tests/clients/java/kafka`: the pom, setup.sh and the launchers.
pub(crate) fn kafka_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/java/kafka")
}

/// Panics naming the setup script unless it has written the classpath.
fn require_setup() {
    let classpath = kafka_dir().join("target/classpath.txt");
    assert!(
        classpath.exists(),
        "Apache Kafka's classpath {} is missing: run {} first (Maven and Java 17+; .ci/run does)",
        classpath.display(),
        kafka_dir().join("setup.sh").display()
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a Kafka tool through `kafka-tool` (a bin/ script name such as `kafka-topics`, or a
/// main class, then its arguments) under a timeout; does not check its exit status.
pub(crate) fn kafka_tool(args: &[&str]) -> Output {
    kafka_tool_with_input(args, None)
}

/// `kafka_tool` with `stdin` fed to the tool (for kafka-console-producer).
pub(crate) fn kafka_tool_with_input(args: &[&str], stdin: Option<&[u8]>) -> Output {
    require_setup();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_with_timeout(KAFKA_TOOL_SECONDS_MAX, &kafka_dir().join("kafka-tool"), &args, stdin)
}

/// What a tool run printed, for failure messages.
pub(crate) fn describe_output(args: &[&str], output: &Output) -> String {
    format!(
        "kafka-tool {args:?}: {}\nstdout (tail):\n{}\nstderr (tail):\n{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stdout), 40),
        tail(&String::from_utf8_lossy(&output.stderr), 40)
    )
}

/// Runs a Kafka tool and returns its stdout; panics with everything it printed unless it
/// exits 0.
pub(crate) fn kafka_tool_ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let output = kafka_tool_with_input(args, stdin);
    assert!(output.status.success(), "{}", describe_output(args, &output));
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

/// A running single-node Apache Kafka 4.4 broker (`kafka-reference-broker`).
pub(crate) struct KafkaBroker {
    child: Option<Child>,
    addr: SocketAddr,
    /// Holds the broker's config, logs and output (`broker/broker.log`); removed on drop.
    dir: TempDir,
}

impl KafkaBroker {
    /// Starts a broker on fresh storage; panics with its output if it does not come up
    /// within `KAFKA_START_SECONDS_MAX`.
    pub(crate) fn start(label: &str) -> KafkaBroker {
        require_setup();
        let dir = TempDir::new(&format!("kafka-{label}"));
        let stderr = std::fs::File::create(dir.path().join("launcher.stderr"))
            .expect("create launcher stderr");
        let mut child = Command::new(kafka_dir().join("kafka-reference-broker"))
            .arg(dir.path().join("broker"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Its own process group, so the drop kills the launcher and the JVM together.
            .process_group(0)
            .spawn()
            .expect("spawn kafka-reference-broker");
        let lines = line_channel(child.stdout.take().expect("piped stdout"));
        let mut broker =
            KafkaBroker { child: Some(child), addr: "127.0.0.1:0".parse().expect("address"), dir };
        let line = lines.recv_timeout(Duration::from_secs(KAFKA_START_SECONDS_MAX));
        let Ok(line) = line else {
            let status = broker.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "the Kafka reference broker did not print its listening line within {KAFKA_START_SECONDS_MAX} s \
                 (launcher exit status: {status:?})\n{}",
                broker.output_tail()
            );
        };
        broker.addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?} from kafka-reference-broker"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        broker
    }

    /// `host:port` for clients.
    pub(crate) fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The launcher's stderr and the tail of the broker's log.
    pub(crate) fn output_tail(&self) -> String {
        let launcher =
            std::fs::read_to_string(self.dir.path().join("launcher.stderr")).unwrap_or_default();
        let log =
            std::fs::read_to_string(self.dir.path().join("broker/broker.log")).unwrap_or_default();
        format!(
            "kafka-reference-broker stderr:\n{}\nbroker.log (tail):\n{}",
            tail(&launcher, LOG_TAIL_LINES_MAX),
            tail(&log, LOG_TAIL_LINES_MAX)
        )
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The JVM runs in the process group the launcher leads; the launcher is not yet
            // reaped (the Child is held), so the group id cannot have been reused.
            let _ = fjord_storage::io::send_signal_to_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("Kafka reference broker {}:\n{}", self.addr, self.output_tail());
        }
        // The TempDir then removes the directory (keeps it with FJORD_KEEP_TEST_DIRS).
    }
}
