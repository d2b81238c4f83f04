//! Method ARN: `arn:{partition}:execute-api:{region}:{account}:{api}/{stage}/{verb}/{path}`.
//!
//! Stage: part of reading the event. Input: the `methodArn` (REST, HTTP API 1.0, WebSocket) or
//! `routeArn` (HTTP API 2.0) that API Gateway puts into the event. Output: its parts, and the
//! prefix that every resource of the returned policy shares.
//!
//! Invariants: the prefix (partition, region, account, API id, stage) is copied from a parsed,
//! checked ARN, never from the client's path; the resource part (`GET/pets/42`) is kept as sent
//! and used only to find the requested route.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("method ARN `{arn}` is malformed: {reason}")]
pub struct ArnError {
    arn: String,
    reason: &'static str,
}

/// A parsed execute-api ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodArn {
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub api_id: String,
    /// The stage; `*` in console test events.
    pub stage: String,
    /// What follows `{stage}/`: `GET/pets/42`, `GET/` (root), `$connect`.
    pub resource: String,
    /// `arn:{partition}:execute-api:{region}:{account}:{api}/{stage}/`, kept from the parse.
    prefix: String,
}

fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl MethodArn {
    pub fn parse(arn: &str) -> Result<Self, ArnError> {
        let err = |reason| ArnError {
            arn: arn.chars().take(512).collect(),
            reason,
        };
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err(
                "expected arn:partition:execute-api:region:account:api/stage/…",
            ));
        };
        // Partitions are `aws` and `aws-<name>` (`aws-cn`, `aws-us-gov`, the ISO partitions).
        if !(partition == "aws"
            || partition
                .strip_prefix("aws-")
                .is_some_and(|p| !p.is_empty() && token_ok(p)))
        {
            return Err(err("unknown partition"));
        }
        if service != "execute-api" {
            return Err(err("not an execute-api ARN"));
        }
        if !token_ok(region) {
            return Err(err("bad region"));
        }
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(err("the account id must be 12 digits"));
        }
        let (api, rest) = rest.split_once('/').ok_or_else(|| err("no stage"))?;
        if !token_ok(api) {
            return Err(err("bad API id"));
        }
        let (stage, resource) = rest
            .split_once('/')
            .ok_or_else(|| err("no route after the stage"))?;
        // Stage names are letters, digits, `-` and `_`; `*` comes from console test events and
        // `$default` from HTTP APIs.
        if !(token_ok(stage) || stage == "*" || stage == "$default") {
            return Err(err("bad stage"));
        }
        if resource.is_empty() {
            return Err(err("no route after the stage"));
        }
        let prefix_len = arn.len() - resource.len();
        Ok(Self {
            prefix: arn.get(..prefix_len).unwrap_or_default().to_owned(),
            partition: partition.to_owned(),
            region: region.to_owned(),
            account_id: account.to_owned(),
            api_id: api.to_owned(),
            stage: stage.to_owned(),
            resource: resource.to_owned(),
        })
    }

    /// `arn:{partition}:execute-api:{region}:{account}:{api}/{stage}/`: the prefix of every
    /// resource in the returned policy (the checked parts of the ARN, as the ARN spells them).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Display for MethodArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix(), self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_partitions_and_forms() {
        for (arn, resource) in [
            (
                "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/pets/42",
                "GET/pets/42",
            ),
            (
                "arn:aws-cn:execute-api:cn-north-1:123456789012:abc123/prod/POST/",
                "POST/",
            ),
            (
                "arn:aws-us-gov:execute-api:us-gov-west-1:123456789012:a/dev/$connect",
                "$connect",
            ),
            (
                "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/*/GET/",
                "GET/",
            ),
        ] {
            let parsed = MethodArn::parse(arn).unwrap();
            assert_eq!(parsed.resource, resource);
            assert_eq!(parsed.to_string(), arn);
        }
    }

    #[test]
    fn refuses_what_is_not_an_execute_api_arn() {
        for bad in [
            "",
            "arn:aws:s3:::bucket/key",
            "arn:aws:execute-api:us-east-1:123:abc/prod/GET/",
            "arn:gcp:execute-api:us-east-1:123456789012:abc/prod/GET/",
            "arn:aws:execute-api:us-east-1:123456789012:abc",
            "arn:aws:execute-api:us-east-1:123456789012:abc/prod",
            "arn:aws:execute-api:us-east-1:123456789012:abc/prod/",
            "arn:aws:execute-api:us-east-1:123456789012:a*c/prod/GET/",
            "arn:aws:execute-api:us-east-1:123456789012:abc/pr?d/GET/",
        ] {
            assert!(MethodArn::parse(bad).is_err(), "{bad}");
        }
    }
}
