//! The `fjord` binary: everything lives in the library; see `fjord --help`.

fn main() -> std::process::ExitCode {
    fjord::cli::main()
}
