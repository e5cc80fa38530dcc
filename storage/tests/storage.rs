//! Integration tests of fjord-storage against real files on io_uring. One binary with a
//! module per capability keeps link time low.

mod common;
mod compaction;
mod crash;
mod fuzz_regressions;
mod log_basics;
mod poison;
mod property;
mod regression;
mod simulation;
mod space;
mod splice;
mod write_behind;
