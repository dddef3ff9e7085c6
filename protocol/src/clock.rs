//! Clock offset and drift estimation (being written).
