//! `fjord cluster up|down`: N local brokers as background processes, for single-host
//! deployments and tests.
//!
//! `up` writes `<dir>/cluster.toml` (free ports on 127.0.0.1, one data dir per broker) unless
//! it exists, starts every broker that is not running (so it also restarts brokers that
//! died), waits until all of them serve, and prints the bootstrap address. Each broker logs
//! to `<dir>/broker-<id>.log` and its pid is in `<dir>/broker-<id>.pid`. `down` stops them
//! with SIGTERM (a clean shutdown) and SIGKILL after a grace period.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fjord_replication::{BrokerEntry, ClusterFile};
use fjord_storage::io::send_signal;

use super::error::CliError;

/// Brokers `cluster up` starts at most.
const LOCAL_BROKERS_MAX: usize = 16;
/// How long `up` waits for every broker to serve.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long `down` waits for a clean exit before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub(super) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Start N local brokers in the background (or restart the ones that stopped).
    Up {
        /// Brokers in a new cluster.
        #[arg(long, default_value_t = 3)]
        brokers: usize,
        /// Directory for the cluster file, control files, logs and data.
        #[arg(long)]
        dir: PathBuf,
        /// Extra `fjord serve` flags for every broker, after `--`. Without `--shards` (or
        /// `--config`) each broker gets its share of this host's CPUs: CPUs / brokers, at
        /// least 1.
        #[arg(last = true)]
        serve_args: Vec<String>,
    },
    /// Stop the brokers started by `up`.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Give every partition back to its preferred (first) replica where that replica is
    /// alive and in sync (ElectLeaders; any Kafka-compatible cluster).
    RebalanceLeaders {
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

/// `serve_args` for each of `brokers` brokers on a host with `cpus` CPUs: the brokers share
/// its CPUs, so unless the flags (or a config file) choose a shard count, each gets
/// `cpus / brokers` shards (at least 1) rather than the one-per-CPU default of a broker alone.
fn with_shared_cpus(serve_args: &[String], brokers: usize, cpus: usize) -> Vec<String> {
    let chosen = serve_args.iter().any(|a| {
        a == "--shards"
            || a.starts_with("--shards=")
            || a == "--config"
            || a.starts_with("--config=")
    });
    let mut args = serve_args.to_vec();
    if !chosen {
        args.extend(["--shards".to_string(), (cpus / brokers.max(1)).max(1).to_string()]);
    }
    args
}

/// A free port, and the listener that holds it: kept until every broker has its port, so
/// two brokers are never given the same one (a port let go at once may be handed out again
/// by the next bind).
fn free_port() -> Result<(u16, TcpListener), CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| CliError::failure(format!("cannot find a free port: {e}")))?;
    let port = listener.local_addr().map_err(|e| CliError::failure(e.to_string()))?.port();
    Ok((port, listener))
}

fn pid_path(dir: &Path, id: i32) -> PathBuf {
    dir.join(format!("broker-{id}.pid"))
}

fn running_pid(dir: &Path, id: i32) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_path(dir, id)).ok()?.trim().parse().ok()?;
    // A pid file may outlive its process; /proc says whether it still runs.
    alive(pid).then_some(pid)
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
}

pub(super) fn run(args: ClusterArgs) -> Result<(), CliError> {
    match args.command {
        ClusterCommand::Up { brokers, dir, serve_args } => up(brokers, &dir, &serve_args),
        ClusterCommand::Down { dir } => down(&dir),
        ClusterCommand::RebalanceLeaders { bootstrap } => rebalance_leaders(&bootstrap),
    }
}

/// `fjord cluster rebalance-leaders`: a preferred election of every partition; prints the
/// partitions that changed leader and those whose preferred replica cannot lead now.
fn rebalance_leaders(bootstrap: &str) -> Result<(), CliError> {
    use kafka_protocol::messages::ElectLeadersRequest;
    /// Kafka's ELECTION_NOT_NEEDED: an answer only for partitions named in the request.
    const ELECTION_NOT_NEEDED: i16 = 84;
    let mut client = super::client::Client::connect(bootstrap)?;
    let mut request = ElectLeadersRequest::default();
    request.election_type = 0; // preferred
    request.topic_partitions = None; // every partition
    request.timeout_ms = 30_000;
    let response = client.send(-1, &request)?;
    if response.error_code != 0 {
        return Err(CliError::failure(format!(
            "cannot elect preferred leaders: {}",
            super::error::error_name(response.error_code)
        )));
    }
    let (mut elected, mut refused) = (0, 0);
    for topic in &response.replica_election_results {
        for p in &topic.partition_result {
            let name = format!("{}-{}", topic.topic.0.as_str(), p.partition_id);
            match p.error_code {
                0 => {
                    elected += 1;
                    println!("{name}: preferred leader elected");
                }
                ELECTION_NOT_NEEDED => {}
                code => {
                    refused += 1;
                    println!("{name}: {}", super::error::error_name(code));
                }
            }
        }
    }
    println!("{elected} partitions moved to their preferred leader, {refused} could not move");
    Ok(())
}

fn up(brokers: usize, dir: &Path, serve_args: &[String]) -> Result<(), CliError> {
    if !(1..=LOCAL_BROKERS_MAX).contains(&brokers) {
        return Err(CliError::usage(format!(
            "--brokers must be between 1 and {LOCAL_BROKERS_MAX}"
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
    let dir =
        dir.canonicalize().map_err(|e| CliError::failure(format!("{}: {e}", dir.display())))?;
    let file_path = dir.join("cluster.toml");
    if !file_path.exists() {
        write_cluster_file(&file_path, &dir, brokers)?;
    }
    let file = ClusterFile::load(&file_path).map_err(|e| CliError::failure(e.to_string()))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure(format!("cannot find the fjord binary: {e}")))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let serve_args = with_shared_cpus(serve_args, file.brokers.len(), cpus);
    for broker in &file.brokers {
        if running_pid(&dir, broker.id).is_none() {
            start_broker(&exe, &file_path, &dir, broker, &serve_args)?;
        }
    }
    let deadline = Instant::now() + START_WAIT;
    for broker in &file.brokers {
        wait_until_serving(&dir, broker, deadline)?;
    }
    let bootstrap: Vec<String> = file.brokers.iter().map(|b| b.address.clone()).collect();
    println!("{}", bootstrap.join(","));
    Ok(())
}

/// A cluster file for `brokers` local brokers on free ports, each with its data in
/// `broker-N` under `dir`.
fn write_cluster_file(file_path: &Path, dir: &Path, brokers: usize) -> Result<(), CliError> {
    let mut entries = Vec::new();
    let mut held = Vec::new();
    for id in 0..brokers as i32 {
        let (port, listener) = free_port()?;
        held.push(listener);
        entries.push(BrokerEntry {
            id,
            address: format!("127.0.0.1:{port}"),
            data_dir: PathBuf::from(format!("broker-{id}")),
        });
    }
    drop(held);
    let file = ClusterFile {
        replication_factor: brokers.min(3) as i16,
        min_insync_replicas: if brokers >= 3 { 2 } else { 1 },
        brokers: entries,
        dir: dir.to_path_buf(),
    };
    std::fs::write(file_path, file.to_toml())
        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", file_path.display())))
}

/// Starts `broker` in the background, its output appended to `broker-N.log` and its pid
/// written beside it.
fn start_broker(
    exe: &Path,
    file_path: &Path,
    dir: &Path,
    broker: &BrokerEntry,
    serve_args: &[String],
) -> Result<(), CliError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("broker-{}.log", broker.id)))
        .map_err(|e| CliError::failure(format!("cannot open the broker log: {e}")))?;
    let child = Command::new(exe)
        .arg("serve")
        .arg("--cluster")
        .arg(file_path)
        .arg("--broker-id")
        .arg(broker.id.to_string())
        .args(serve_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| CliError::failure(e.to_string()))?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal does not reach the brokers.
        .process_group(0)
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot start broker {}: {e}", broker.id)))?;
    std::fs::write(pid_path(dir, broker.id), child.id().to_string())
        .map_err(|e| CliError::failure(format!("cannot write the pid file: {e}")))
}

/// Waits until `broker` accepts connections; fails at `deadline` or if it exits first.
fn wait_until_serving(dir: &Path, broker: &BrokerEntry, deadline: Instant) -> Result<(), CliError> {
    let address: SocketAddr = broker
        .address
        .parse()
        .map_err(|_e| CliError::failure(format!("bad address {}", broker.address)))?;
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline || running_pid(dir, broker.id).is_none() {
            return Err(CliError::failure(format!(
                "broker {} did not start serving on {}",
                broker.id, broker.address
            ))
            .with_hint(format!(
                "see {}",
                dir.join(format!("broker-{}.log", broker.id)).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn down(dir: &Path) -> Result<(), CliError> {
    let file = ClusterFile::load(&dir.join("cluster.toml")).map_err(|e| {
        CliError::failure(e.to_string())
            .with_hint("is this a directory made by `fjord cluster up`?")
    })?;
    let mut pids = Vec::new();
    for broker in &file.brokers {
        if let Some(pid) = running_pid(dir, broker.id) {
            // A broker that exited since `running_pid` looked needs no signal: errors are moot.
            let _ = send_signal(pid, libc::SIGTERM);
            pids.push((broker.id, pid));
        }
    }
    let deadline = Instant::now() + STOP_WAIT;
    for (id, pid) in pids {
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            eprintln!("broker {id} (pid {pid}) did not stop in time; killing it");
            let _ = send_signal(pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_file(pid_path(dir, id));
    }
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_shared_cpus;

    #[test]
    fn local_brokers_share_the_cpus_unless_told_otherwise() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(with_shared_cpus(&[], 3, 2), args(&["--shards", "1"]));
        assert_eq!(
            with_shared_cpus(&args(&["--retention-ms", "1000"]), 3, 16),
            args(&["--retention-ms", "1000", "--shards", "5"])
        );
        assert_eq!(with_shared_cpus(&[], 1, 8), args(&["--shards", "8"]));
        for chosen in [&["--shards", "4"][..], &["--shards=4"], &["--config", "f.toml"]] {
            assert_eq!(with_shared_cpus(&args(chosen), 3, 2), args(chosen), "{chosen:?}");
        }
    }
}
