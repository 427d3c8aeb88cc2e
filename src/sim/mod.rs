//! Offline replay simulator (to be written).
