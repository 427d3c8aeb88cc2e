//! carbonshift: a Kubernetes operator that runs GPU batch and training jobs when the
//! electricity grid is cleanest.
//!
//! The crate is layered so that every decision is a pure function of its inputs:
//! [`series`], [`plan`] and [`accounting`] know nothing of Kubernetes, I/O or the clock.
//! The controller, `carbonshift simulate` and `carbonshift plan -f` all call the same
//! [`plan::decide`] and [`accounting`] code, so what the simulator measures is what the
//! operator does.
#![forbid(unsafe_code)]
// Bad input must never panic the operator: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounting;
pub mod api;
pub mod cli;
pub mod controller;
pub mod data;
pub mod duration;
pub mod forecast;
pub mod kueue;
pub mod metrics;
pub mod plan;
pub mod region;
pub mod series;
pub mod sim;
pub mod telemetry;
pub mod timefmt;
