//! The wall clock, in the milliseconds since the Unix epoch that Kafka's timestamps, group
//! deadlines and heartbeats use. One definition, so a simulated clock has one place to
//! replace.

/// Milliseconds since the Unix epoch; 0 if the system clock is set before it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}
