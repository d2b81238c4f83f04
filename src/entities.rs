//! Entities: one caller's [`Facts`] → the Cedar principal, its ancestors, the resource and the
//! context ([`CallerRequest`]).
//!
//! Stage: after `facts`, before `decide`. Input: the bundle's [`Mapping`] (the entity types),
//! its static and action entities, and the facts. Output: the Cedar parts of the caller's
//! requests (the action varies by route).
//!
//! Invariant: the Cedar request is built from the facts alone. What the facts leave out (the
//! principal's id when no policy tells principals apart by id, an attribute no policy reads)
//! is absent, or the fixed [`PLACEHOLDER_ID`]; so two callers with equal facts get the same
//! Cedar request, and a decision memoized for one is exactly Cedar's decision for the other.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};

use crate::decide::CallerRequest;
use crate::facts::{ClaimError, FactValue, Facts, Mapping};
use crate::time::rfc3339_millis;

/// The id the principal (or the resource) gets when no policy reads ids: every caller gets
/// the same one, which no policy can name (a policy that names an id makes the id a fact).
pub const PLACEHOLDER_ID: &str = "";

fn entity_error(e: impl std::fmt::Display) -> ClaimError {
    ClaimError::Entity(e.to_string())
}

/// A fact as a Cedar value.
fn expression(v: &FactValue) -> Result<RestrictedExpression, ClaimError> {
    Ok(match v {
        FactValue::String(s) => RestrictedExpression::new_string(s.clone()),
        FactValue::Long(n) => RestrictedExpression::new_long(*n),
        FactValue::Bool(b) => RestrictedExpression::new_bool(*b),
        FactValue::Entity { r#type, id } => {
            let t = EntityTypeName::from_str(r#type).map_err(entity_error)?;
            RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                t,
                EntityId::new(id),
            ))
        }
        FactValue::Set(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(expression)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        FactValue::Ip(ip) => RestrictedExpression::new_ip(ip.clone()),
        FactValue::Datetime(ms) => RestrictedExpression::new_datetime(rfc3339_millis(*ms)),
        FactValue::Record(fields) => RestrictedExpression::new_record(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), expression(v)?)))
                .collect::<Result<Vec<_>, ClaimError>>()?,
        )
        .map_err(entity_error)?,
    })
}

/// The principal's direct parents as Cedar entity uids.
fn parents(mapping: &Mapping, facts: &Facts) -> Vec<EntityUid> {
    facts
        .parents
        .iter()
        .filter_map(|p| {
            let t = mapping.parent(&p.r#type)?;
            Some(EntityUid::from_type_name_and_id(
                t.entity_type.clone(),
                EntityId::new(&p.id),
            ))
        })
        .collect()
}

/// The principal entity the facts describe.
pub fn principal(mapping: &Mapping, facts: &Facts) -> Result<Entity, ClaimError> {
    let uid = EntityUid::from_type_name_and_id(
        mapping.principal_type().clone(),
        EntityId::new(facts.principal_id.as_deref().unwrap_or(PLACEHOLDER_ID)),
    );
    let attrs: HashMap<String, RestrictedExpression> = facts
        .principal_attrs
        .iter()
        .map(|(k, v)| Ok((k.clone(), expression(v)?)))
        .collect::<Result<_, ClaimError>>()?;
    Entity::new(uid, attrs, parents(mapping, facts).into_iter().collect()).map_err(entity_error)
}

/// The resource entity: the API.
fn resource(mapping: &Mapping, facts: &Facts) -> Result<Entity, ClaimError> {
    let uid = EntityUid::from_type_name_and_id(
        mapping.resource_type().clone(),
        EntityId::new(facts.api_id.as_deref().unwrap_or(PLACEHOLDER_ID)),
    );
    let attrs: HashMap<String, RestrictedExpression> = facts
        .resource_attrs
        .iter()
        .map(|(k, v)| Ok((k.clone(), expression(v)?)))
        .collect::<Result<_, ClaimError>>()?;
    Entity::new(uid, attrs, HashSet::new()).map_err(entity_error)
}

/// Builds the caller's Cedar request parts. `base` holds the bundle's static and action
/// entities (transitively closed).
pub fn caller(
    mapping: &Mapping,
    facts: &Facts,
    base: &Entities,
) -> Result<CallerRequest, ClaimError> {
    let principal = principal(mapping, facts)?;
    let principal_uid = principal.uid();
    let mut ancestors: HashSet<EntityUid> = HashSet::new();
    for p in parents(mapping, facts) {
        if let Some(up) = base.ancestors(&p) {
            ancestors.extend(up.cloned());
        }
        ancestors.insert(p);
    }
    let resource = resource(mapping, facts)?;
    let resource_uid = resource.uid();
    let context = Context::from_pairs(
        facts
            .context
            .iter()
            .map(|(k, v)| Ok((k.clone(), expression(v)?)))
            .collect::<Result<Vec<_>, ClaimError>>()?,
    )
    .map_err(entity_error)?;
    let entities = base
        .clone()
        .add_entities([principal, resource], None)
        .map_err(entity_error)?;
    Ok(CallerRequest {
        principal: principal_uid,
        ancestors,
        resource: resource_uid,
        context,
        entities,
    })
}
