//! How a command fails: an error with its message, an optional hint and the exit code it
//! maps to (stable: 1 for a failure while running, 2 for bad flags or values), and Kafka
//! error codes by the names Kafka gives them (`INVALID_REQUEST`), as the commands print them.

/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad flags or values.
pub const EXIT_USAGE: u8 = 2;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError { code: EXIT_USAGE, message: message.into(), hint: None }
    }
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError { code: EXIT_FAILURE, message: message.into(), hint: None }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

/// A Kafka error code by Kafka's name for it, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub(super) fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(kafka_protocol::ResponseError::Unknown(_)) | None => format!("error {code}"),
        Some(known) => kafka_name(&format!("{known:?}")),
    }
}

/// Kafka's name of an error (`INVALID_REQUEST`) from its Rust variant (`InvalidRequest`).
fn kafka_name(variant: &str) -> String {
    let mut name = String::with_capacity(variant.len() + 4);
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::error_name;

    #[test]
    fn errors_are_named_as_kafka_names_them() {
        assert_eq!(error_name(42), "INVALID_REQUEST");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-32000), "error -32000");
    }
}
