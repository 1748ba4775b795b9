//! Store benchmarks (placeholder, filled in below).
