//! Planning past the end of a forecast: real forecasts reach 24-72 h, deadlines may lie
//! further out. Beyond the horizon the planner uses the region's historical profile.

use chrono::{DateTime, Utc};

use crate::series::Series;

/// Mean intensity per slot of the day (UTC), learnt from history.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyProfile {
    /// Slot length in seconds; `means.len() * step_secs == 86_400`.
    pub step_secs: i64,
    pub means: Vec<f64>,
}

/// Returns `forecast` extended to `until` with values from `profile`.
pub fn extend_with_profile(_forecast: &Series, _profile: &DailyProfile, _until: DateTime<Utc>) -> Series {
    todo!("plan helper")
}
