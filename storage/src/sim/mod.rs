//! A deterministic simulator of the disk and the clock, for tests: the partition log runs on
//! [`SimDisk`] and [`SimClock`] instead of io_uring and the system clock, and a seed decides
//! every fault the disk injects, so a failing schedule replays exactly.
//!
//! - [`SimDisk`] (`disk.rs`, `image.rs`): files in memory, each with a durable and a volatile
//!   image; crashes that keep any mix of unsynced writes (torn at sector granularity,
//!   written back out of order, misdirected), and EIO/ENOSPC/latency from a seed.
//! - [`SimClock`] (`clock.rs`): a clock the test moves.
//! - [`Rng`] (`rng.rs`) and [`seed`] (`seed.rs`): the generator and the one seed variable,
//!   `FJORD_SEED`, shared by every seeded test, and [`schedules`], the count of schedules a
//!   simulation test runs (`FJORD_SIM_SCHEDULES`).

mod clock;
mod disk;
mod image;
mod rng;
mod seed;

pub use clock::SimClock;
pub use disk::{Faults, SimDisk, SimFile, SimStats};
pub use rng::Rng;
pub use seed::{schedules, seed, SCHEDULES_VARIABLE, SEED_VARIABLE};
