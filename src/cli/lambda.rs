//! `cedargate lambda`: the handler under the real Lambda runtime API.

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;

use crate::config::{Config, Env};
use crate::handler::Unauthorized;

impl From<Unauthorized> for Diagnostic {
    fn from(_: Unauthorized) -> Self {
        // API Gateway matches the message exactly to answer 401.
        Diagnostic {
            error_type: "Unauthorized".to_owned(),
            error_message: "Unauthorized".to_owned(),
        }
    }
}

pub fn run(env: &dyn Env) -> ExitCode {
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(e) => return super::config_failure(&e),
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let authorizer = match crate::build_authorizer(&config).await {
            Ok(a) => Arc::new(a),
            Err(e) => {
                eprintln!("cedargate: {e}");
                return ExitCode::from(1);
            }
        };
        // Load (or fail loudly and deny) during the init phase, not on the first request.
        authorizer.store().ensure_fresh().await;
        // The event as the text the runtime received: the handler reads it in one pass.
        // The Lambda request id is the decision id: in the decision line and in the response
        // context, so the backend and API Gateway's access log can name the decision.
        let handler = service_fn(move |event: LambdaEvent<Box<RawValue>>| {
            let authorizer = authorizer.clone();
            async move {
                let id = event.context.request_id;
                authorizer.handle_json(event.payload.get(), Some(id)).await
            }
        });
        match lambda_runtime::run(handler).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cedargate: lambda runtime: {e}");
                ExitCode::from(1)
            }
        }
    })
}
