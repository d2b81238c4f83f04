//! Authorizer events (stub).
