//! Signals: sending one to a process or a process group, and SIGPIPE's disposition. The CLI
//! stops the brokers it started with these, and the tests stop, pause and kill theirs.
//!
//! Invariant: a signal goes to exactly one positive process id (or process-group id). The
//! kernel reads 0 and negative ids as "my own group" or "every process I may signal", which
//! no caller means, so they are refused here instead of passed on.

use std::io;

/// `id` as a `pid_t` naming one process (or group): positive, and within `pid_t`.
fn one_pid(id: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(id) {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id} names no single process"),
        )),
    }
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to process `pid`, as `kill(2)`. The caller makes
/// sure `pid` is still the process it means: a child not yet reaped, or one checked in
/// `/proc` just before.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = one_pid(pid)?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("kill({pid}, {signal}): {error}")));
    }
    Ok(())
}

/// Sends `signal` to every process of the group `pgid` leads, as `killpg(2)`: a launcher
/// and the processes it started (a JVM under a shell script, say).
pub fn send_signal_to_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = one_pid(pgid)?;
    // SAFETY: killpg(2) takes two integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("killpg({pgid}, {signal}): {error}")));
    }
    Ok(())
}

/// Gives SIGPIPE back its default disposition (end the process), which Rust's runtime sets
/// to "ignore" before `main`: a command piped into `head` then ends quietly when the pipe
/// closes, as Unix tools do. Call it before starting threads; the broker never does (a client
/// going away is an error on one connection, not the end of the process).
pub fn restore_default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler of ours, so no code of ours runs
    // in signal context; the previous disposition (SIG_IGN) is not needed back.
    #[allow(unsafe_code)]
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(previous, libc::SIG_ERR, "SIGPIPE is a valid signal");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_signal_reaches_the_child_and_stray_ids_are_refused() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        send_signal(child.id(), libc::SIGKILL).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        for stray in [0, u32::MAX, 1 << 31] {
            let error = send_signal(stray, 0).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{stray}: {error}");
            let error = send_signal_to_group(stray, 0).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{stray}: {error}");
        }
    }

    #[test]
    fn a_group_signal_reaches_every_process_of_the_group() {
        use std::os::unix::process::CommandExt;
        // A shell leading its own group, with a child of its own in the same group.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        // Signal 0 checks that the group exists without sending anything.
        send_signal_to_group(pgid, 0).unwrap();
        send_signal_to_group(pgid, libc::SIGKILL).unwrap();
        assert_eq!(leader.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
