//! The one seed variable of every seeded test, `FJORD_SEED`, and the count of schedules a
//! simulation test runs, `FJORD_SIM_SCHEDULES`.
//!
//! A test calls [`seed`] once: the variable's value when set (decimal or `0x` hex), else a
//! seed from the time. Either way the seed is printed to stderr before the test runs, which
//! the test harness shows when the test fails, so every failure names the seed to rerun.
//! Schedule `i` of a simulation test runs on seed `seed + i`, so `FJORD_SEED=<that>
//! FJORD_SIM_SCHEDULES=1` replays one schedule alone.

/// The environment variable that fixes the seed of seeded tests.
pub const SEED_VARIABLE: &str = "FJORD_SEED";

/// The seed for the calling test, printed with the test's name (`what`).
///
/// # Panics
/// If `FJORD_SEED` is set but is not a u64.
pub fn seed(what: &str) -> u64 {
    let seed = match std::env::var(SEED_VARIABLE) {
        Ok(text) => {
            let text = text.trim();
            match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            }
            .unwrap_or_else(|_| panic!("{SEED_VARIABLE}={text} is not a u64 (decimal or 0x-hex)"))
        }
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            // Mixed with the process id: tests started in the same nanosecond differ.
            now ^ (u64::from(std::process::id()) << 32)
        }
    };
    eprintln!("{what}: {SEED_VARIABLE}={seed}");
    seed
}

/// The environment variable that sets how many schedules a simulation test runs.
pub const SCHEDULES_VARIABLE: &str = "FJORD_SIM_SCHEDULES";

/// How many schedules the calling simulation test runs: `FJORD_SIM_SCHEDULES` when set,
/// else `default`.
///
/// # Panics
/// If `FJORD_SIM_SCHEDULES` is set but is not a u64.
pub fn schedules(default: u64) -> u64 {
    match std::env::var(SCHEDULES_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SCHEDULES_VARIABLE}={text} is not a count of schedules")),
        Err(_) => default,
    }
}
