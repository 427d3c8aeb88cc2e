//! Controller (to be written).
