//! Deterministic choice function (being written).
