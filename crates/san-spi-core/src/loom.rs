//! The atomics the core's concurrent parts use: `loom`'s in the loom model tests, `std`'s
//! otherwise.
//!
//! Production code imports atomics only from here, so the loom models
//! (`RUSTFLAGS="--cfg loom" cargo test -p san-spi-core --release --lib loom`, run by
//! `cargo xtask ci`) explore exactly the code that ships.

#[cfg(all(test, loom))]
pub(crate) use ::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
