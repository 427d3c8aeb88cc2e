//! CarbonAwareJob API types (to be written).
