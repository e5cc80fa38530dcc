//! The `fjord` binary: everything lives in the library; see `fjord --help`.

#[global_allocator]
static ALLOCATOR: fjord::alloc::Allocator = fjord::alloc::Allocator;

fn main() -> std::process::ExitCode {
    fjord::cli::main()
}
