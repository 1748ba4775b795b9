//! The scheduler: places servers on nodes (work in progress).
