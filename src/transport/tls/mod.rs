//! TLS (placeholder, being written).
