//! Typed HTTP client of the Cirrus native API (`cirrus.dev/v1`).
