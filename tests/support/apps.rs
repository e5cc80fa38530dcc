//! Applications built on Apache Kafka 4.4 (`tests/clients/java/apps`, built by its
//! setup.sh): Kafka Connect's distributed worker, the Kafka Streams word count of Kafka's
//! examples, and small programs of ours on kafka-clients, run against Fjord.
//!
//! Invariants: a `JavaApp` runs in a process group of its own, with stdout and stderr in a
//! log file of its directory; `stop` asks it to shut down as an operator would (SIGTERM,
//! which runs its shutdown hooks), `kill` crashes it (SIGKILL to the group, no hooks) and
//! drop kills the group. A missing build is a failure that names the setup script, never a
//! skip: CI runs the script first.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::run_with_timeout;

/// Longest one short program (`run_app`) may take.
const APP_SECONDS_MAX: u64 = 180;
/// How long a stopped application may take over its shutdown (Connect stops its connectors
/// and flushes their offsets, Streams commits and closes its stores).
const STOP_SECONDS_MAX: u64 = 60;
/// Lines of an application's log printed when a test fails.
const LOG_TAIL_LINES_MAX: usize = 60;

/// `tests/clients/java/apps`: the pom, setup.sh and `run`.
pub(crate) fn apps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/java/apps")
}

fn require_setup() {
    let classpath = apps_dir().join("target/classpath.txt");
    assert!(
        classpath.exists(),
        "the Kafka applications' classpath {} is missing: run {} first (Maven and Java 17+; \
         .ci/run does)",
        classpath.display(),
        apps_dir().join("setup.sh").display()
    );
}

/// Runs main class `main` of the applications to its end under a timeout.
pub(crate) fn run_app(main: &str, args: &[&str]) -> Output {
    require_setup();
    let mut all = vec![main.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    run_with_timeout(APP_SECONDS_MAX, &apps_dir().join("run"), &all, None)
}

/// A port free on 127.0.0.1 when asked (for a server that takes its port from a config).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A long-running application (a Connect worker, a Streams application).
pub(crate) struct JavaApp {
    child: Option<Child>,
    log: PathBuf,
    what: String,
}

impl JavaApp {
    /// Starts main class `main` with `args`, logging at `level` into `dir/<label>.log`
    /// (appended to, so a restarted application's log follows its first one).
    pub(crate) fn spawn(
        dir: &Path,
        label: &str,
        level: &str,
        main: &str,
        args: &[&str],
    ) -> JavaApp {
        require_setup();
        let log = dir.join(format!("{label}.log"));
        let file = File::options().create(true).append(true).open(&log).expect("open the app log");
        let child = Command::new(apps_dir().join("run"))
            .arg(main)
            .args(args)
            .env("FJORD_JAVA_LOG_LEVEL", level)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {main}: {e}"));
        JavaApp { child: Some(child), log, what: format!("{label} ({main})") }
    }

    /// Everything it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES_MAX)..].join("\n")
    }

    /// Shuts it down with SIGTERM and waits for its exit; panics if it outlives the bound.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = fjord_storage::io::send_signal_to_group(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(STOP_SECONDS_MAX);
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = fjord_storage::io::send_signal_to_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                panic!(
                    "{} did not stop within {STOP_SECONDS_MAX} s:\n{}",
                    self.what,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it with SIGKILL, as a crash (no shutdown hooks, nothing flushed or closed), and
    /// waits for its exit.
    pub(crate) fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // As in drop: the JVM leads the group and is not yet reaped.
        let _ = fjord_storage::io::send_signal_to_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for JavaApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The JVM leads the group (`run` execs it); the child is not yet reaped, so the
            // group id cannot have been reused.
            let _ = fjord_storage::io::send_signal_to_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}:\n{}", self.what, self.log_tail());
        }
    }
}

/// An HTTP request with curl (to Kafka Connect's REST API): the status code and the body,
/// or `None` if nothing answered.
pub(crate) fn http(method: &str, url: &str, json: Option<&str>) -> Option<(u16, String)> {
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "30".into(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(json) = json {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            json.into(),
        ]);
    }
    args.push(url.into());
    let out = run_with_timeout(60, Path::new("curl"), &args, None);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}
