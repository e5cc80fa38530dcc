//! How a command fails: an error with its message, an optional hint and the exit code it
//! maps to (stable: 1 for a failure while running, 2 for bad flags or values), and Kafka
//! error codes as the lowercase names the commands print.

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

/// A Kafka error code as a lowercase name, e.g. `unknowntopicorpartition`.
pub(super) fn error_name(code: i16) -> String {
    kafka_protocol::ResponseError::try_from_code(code)
        .map_or(format!("error {code}"), |e| format!("{e:?}").to_lowercase())
}
