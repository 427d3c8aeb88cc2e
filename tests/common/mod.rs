//! Helpers shared by integration tests. Each test binary includes this with `mod common;`
//! and uses what it needs, so unused items are expected.
#![allow(dead_code)]

pub mod cluster;
pub mod em;
pub mod forecast;
pub mod kueue;
pub mod operator;
pub mod watch_delay;
