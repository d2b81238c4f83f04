//! cedargate: an AWS API Gateway Lambda authorizer that verifies a JWT, asks Cedar policies
//! which of the API's routes the caller may use, and answers with one exact IAM policy that
//! covers all of them.
//!
//! The modules are declared in pipeline order: each stage produces what the next consumes.
//! The request core (`authorize`: `facts` → `entities` → `decide` → `iam` → `response`) is
//! pure; only `jwks`, `store` and the `handler` around the core do I/O.

pub mod config;
mod time;
mod text;
mod pem;

mod event;
pub mod arn;
pub mod token;
pub mod jwks;
pub mod claims;
pub mod routes;
mod facts;
mod entities;
mod decide;
pub mod iam;
mod response;
mod authorize;
mod audit;
mod handler;

pub mod bundle;
mod store;

mod explain;
mod policy_tests;
mod review;
pub mod template;

/// `cedargate serve` and the development issuer behind `cedargate token`: development parts,
/// left out of the Lambda artifact (the `dev` feature).
#[cfg(feature = "dev")]
mod serve;

pub mod cli;

/// The fuzz targets' entry points (`fuzz/`): only under `cargo fuzz`.
#[cfg(fuzzing)]
pub mod fuzzing;

use std::sync::Arc;

/// Builds the authorizer from configuration: key store, verifier, policy store.
pub(crate) async fn build_authorizer(
    config: &config::Config,
) -> Result<handler::Authorizer, String> {
    for name in
        config::unknown_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    {
        tracing::warn!(
            event = "unknown_variable",
            variable = %name,
            "`{name}` is set but cedargate does not read it (a misspelt setting keeps its default)"
        );
    }
    let keys = jwks::KeyStore::new(&config.jwt)
        .await
        .map_err(|e| e.to_string())?;
    let verifier = claims::Verifier::new(&config.jwt, Arc::new(keys));
    let store = Arc::new(store::Store::new(&config.policy));
    Ok(handler::Authorizer::new(
        &config.jwt,
        verifier,
        store,
        config.response.clone(),
        config.observe.clone(),
    ))
}
