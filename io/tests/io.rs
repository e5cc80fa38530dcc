//! Integration tests of fjord-io against real files and sockets on io_uring. One binary with
//! a module per capability keeps link time low.

mod common;
mod reaper;
mod residency;
mod splice;
