//! cedargate: an AWS API Gateway Lambda authorizer that verifies a JWT, asks Cedar policies
//! which of the API's routes the caller may use, and answers with one exact IAM policy that
//! covers all of them.
//!
//! The modules are declared in pipeline order: each stage produces what the next consumes.
//! The decision core (`entities` → `decide` → `iam` → `response`) is pure; only `jwks` and
//! `store` do I/O.

pub mod config;

pub mod event;
pub mod token;
pub mod jwks;
pub mod claims;
