//! Verification keys (stub: to be implemented).
