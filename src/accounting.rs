//! accounting (to be written).
