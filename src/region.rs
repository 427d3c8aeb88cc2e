//! region (to be written).
