//! The bundle compiler: a bundle's files → a [`Snapshot`], everything the authorizer needs,
//! computed once.
//!
//! Stage: bundle load (cold start, refresh, `validate`, `test`, `publish`, `explain`). Input:
//! [`BundleFiles`] (`schema/*.cedarschema`, `policies/**/*.cedar`, `entities/**/*.json`).
//! Output: a [`Snapshot`] or a [`Problems`] report. The phases, in order:
//!
//! 1. [`schema`]: the Cedar schema, its resolved JSON form, the route table;
//! 2. [`mapping`]: the identity mapping from the schema's annotations;
//! 3. [`policies`]: the policies, renamed `<file>#<@id or index>`, strictly validated;
//! 4. [`statics`]: the static entities and the action entities, validated;
//! 5. the policy index (policies sliced by route and principal scope), [`lints`], [`reads`]
//!    (which facts each policy reads), and the IAM analysis of the route table.
//!
//! Invariants: a snapshot exists only if the bundle parsed and passed Cedar's strict
//! validation and cedargate's own checks; everything computable once is computed here, never
//! per request. The snapshot is one immutable value, identified by its content digest; the
//! parts computed from the sources ([`Derived`]) carry [`FORMAT`], the version of the
//! computation, so that a stored copy can be told apart from one this code would compute.

mod files;
mod lints;
mod locate;
mod mapping;
mod policies;
pub mod reads;
mod report;
mod schema;
mod statics;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use cedar_policy::{Entities, EntityUid, PolicyId, PolicySet, Schema};

use crate::arn::MethodArn;
use crate::decide::PolicyIndex;
use crate::facts::{Mapping, Reads, RequestFact};
use crate::iam::{Base, Plan};
use crate::routes::RouteTable;

pub use files::{is_bundle_path, BundleFiles};
pub use locate::SchemaItem;
pub use mapping::MappingError;
pub use report::{one_line, Problems};

/// The version of what [`Snapshot::compile`] derives from the sources (routes, mapping, reads,
/// index, IAM analysis). Bump it whenever that computation changes in a way a stored copy
/// would not reflect.
pub const FORMAT: &str = "cedargate-compiled/1";

/// What the compiler derives from the sources, beside Cedar's own parsed forms.
#[derive(Debug)]
pub struct Derived {
    pub routes: RouteTable,
    /// The Cedar action of each route, in route order.
    pub route_actions: Vec<EntityUid>,
    pub mapping: Mapping,
    /// What the policies read, all together.
    pub reads: Reads,
    /// What each policy reads, for the policies that read anything besides the parents.
    pub policy_reads: Vec<(PolicyId, Reads)>,
    pub index: PolicyIndex,
    /// The IAM analysis for every stage whose name equals no route literal.
    pub plan: Arc<Plan>,
}

/// A compiled bundle: immutable, shared by every request that uses it.
#[derive(Debug)]
pub struct Snapshot {
    /// The content digest of the bundle (SHA-256 hex).
    pub digest: String,
    /// The same digest as bytes: what memoized results are keyed by.
    pub id: [u8; 32],
    /// A human label of where the bundle came from (directory, S3 object and version).
    pub origin: String,
    pub loaded_at: SystemTime,
    pub schema: Schema,
    pub policies: PolicySet,
    /// Static entities and the schema's action entities, transitively closed.
    pub base_entities: Entities,
    pub derived: Derived,
    /// Analyses for stages whose name a path segment could spell, made on first use.
    special_plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// The full-prefix analysis, made the first time a caller needs it.
    full_plan: OnceLock<Arc<Plan>>,
    /// The bundle's files (policy sources for `explain`, test files for `test`).
    pub files: BundleFiles,
}

/// Timing of the compile phases, logged at debug level.
struct Phases {
    started: Instant,
}

impl Phases {
    fn done(&self, name: &str) {
        tracing::debug!(
            phase = name,
            millis = self.started.elapsed().as_millis() as u64,
            "bundle compile"
        );
    }
}

impl Snapshot {
    pub fn routes(&self) -> &RouteTable {
        &self.derived.routes
    }

    pub fn mapping(&self) -> &Mapping {
        &self.derived.mapping
    }

    pub fn reads(&self) -> &Reads {
        &self.derived.reads
    }

    pub fn index(&self) -> &PolicyIndex {
        &self.derived.index
    }

    /// Whether decisions may be reused for equal facts: not when a policy reads the time.
    pub fn decisions_reusable(&self) -> bool {
        !self.derived.mapping.reads_time(&self.derived.reads)
    }

    /// The request facts (source IP, user agent, headers, time) some policy reads.
    pub fn request_facts(&self) -> Vec<RequestFact> {
        self.derived.mapping.request_facts(&self.derived.reads)
    }

    /// The policies that read `fact`.
    pub fn readers_of(&self, fact: &RequestFact) -> Vec<&PolicyId> {
        self.derived
            .policy_reads
            .iter()
            .filter(|(_, r)| self.derived.mapping.request_facts(r).contains(fact))
            .map(|(id, _)| id)
            .collect()
    }

    /// The IAM analysis for requests in `stage`: stage `*` (console tests) has its own, exact
    /// in every stage at once ([`Plan::any_stage`]).
    pub fn plan_for(&self, stage: &str) -> Arc<Plan> {
        let routes = &self.derived.routes;
        if stage != "*" && !Plan::stage_is_special(routes, stage) {
            return self.derived.plan.clone();
        }
        let mut plans = self.special_plans.lock().unwrap_or_else(|e| e.into_inner());
        plans
            .entry(stage.to_owned())
            .or_insert_with(|| {
                Arc::new(if stage == "*" {
                    Plan::any_stage(routes)
                } else {
                    Plan::with_stage(routes, Some(stage))
                })
            })
            .clone()
    }

    /// The analysis and the caller's route-independent policy for requests to `arn`'s API
    /// and stage. Short-prefix patterns when they express the caller's decisions exactly;
    /// otherwise the full-prefix analysis is tried, and the more exact of the two is kept.
    pub fn policy_base(&self, arn: &MethodArn, allowed: &[bool]) -> (Arc<Plan>, Base) {
        let plan = self.plan_for(&arn.stage);
        // What a resource costs besides its pattern: its prefix and JSON quoting.
        let short_cost = arn.partition.len() + arn.stage.len() + 26;
        let base = plan.base(allowed, short_cost);
        // Stage `*` (console tests) is written with the full prefix either way.
        if base.inexact().is_empty() || arn.stage == "*" {
            return (plan, base);
        }
        let full = self
            .full_plan
            .get_or_init(|| Arc::new(Plan::full_prefix(&self.derived.routes)))
            .clone();
        let full_base = full.base(allowed, arn.prefix().len() + 3);
        if full_base.inexact().len() < base.inexact().len() {
            (full, full_base)
        } else {
            (plan, base)
        }
    }

    /// A short revision for logs and responses: the first 12 hex digits of the digest.
    pub fn revision(&self) -> &str {
        self.digest.get(..12).unwrap_or(&self.digest)
    }

    /// Compiles a bundle. `Err` holds every error found (and the warnings).
    pub fn compile(
        files: BundleFiles,
        origin: impl Into<String>,
    ) -> Result<(Snapshot, Problems), Problems> {
        let mut problems = Problems::default();
        let phases = Phases {
            started: Instant::now(),
        };

        let Some(schema::Read {
            schema,
            json: schema_json,
        }) = schema::read(&files, &mut problems)
        else {
            return Err(problems);
        };
        let at_schema = schema::Locator::new(&files);
        phases.done("schema");
        let (routes, route_actions) = schema::routes(&schema, &at_schema, &mut problems);
        let mapping = match mapping::read(&schema_json, &route_actions) {
            Ok(m) => Some(m),
            Err(errs) => {
                for e in errs {
                    problems.error(at_schema.report(&e.at, e.message, None));
                }
                None
            }
        };
        phases.done("routes and mapping");
        let policies::Read { policies, places } =
            policies::read(&files, &schema, &schema_json, &mut problems);
        phases.done("policies");
        let base = statics::read(
            &files,
            &schema,
            mapping.as_ref().map(Mapping::principal_type),
            &mut problems,
        );
        let Some(mapping) = mapping else {
            return Err(problems);
        };
        if !problems.errors.is_empty() {
            return Err(problems);
        }
        phases.done("entities");

        let index = PolicyIndex::new(
            &policies,
            route_actions.clone(),
            &action_ancestors(&base, &route_actions),
        );
        lints::report(&index, &mapping, &places, &files, &mut problems);
        let (reads, policy_reads) = read_facts(&index, &mapping);
        phases.done("index");
        let plan = Plan::new(&routes);
        phases.done("iam plan");
        let digest = files.digest();
        Ok((
            Snapshot {
                id: digest_bytes(&digest),
                digest,
                origin: origin.into(),
                loaded_at: SystemTime::now(),
                schema,
                policies,
                base_entities: base,
                derived: Derived {
                    routes,
                    route_actions,
                    mapping,
                    reads,
                    policy_reads,
                    index,
                    plan: Arc::new(plan),
                },
                special_plans: Mutex::new(HashMap::new()),
                full_plan: OnceLock::new(),
                files,
            },
            problems,
        ))
    }
}

/// A hex SHA-256 as bytes (our own digest: always 64 hex digits).
fn digest_bytes(hex_digest: &str) -> [u8; 32] {
    let mut id = [0u8; 32];
    if hex::decode_to_slice(hex_digest, &mut id).is_err() {
        use sha2::Digest;
        id = sha2::Sha256::digest(hex_digest.as_bytes()).into();
    }
    id
}

/// Each route action's action groups, transitively, for slicing.
fn action_ancestors(
    base: &Entities,
    route_actions: &[EntityUid],
) -> HashMap<EntityUid, HashSet<EntityUid>> {
    route_actions
        .iter()
        .map(|a| {
            let up: HashSet<EntityUid> = base
                .ancestors(a)
                .map(|i| i.cloned().collect())
                .unwrap_or_default();
            (a.clone(), up)
        })
        .collect()
}

/// What the policies that can apply to a route read: all together, and per policy (for the
/// policies that read anything).
fn read_facts(index: &PolicyIndex, mapping: &Mapping) -> (Reads, Vec<(PolicyId, Reads)>) {
    let mut all = Reads::default();
    let mut each = Vec::new();
    for (policy, _) in index.scoped() {
        let r = reads::of_policy(policy, mapping.principal_type(), mapping.resource_type());
        all.union_with(&r);
        if r != Reads::default() {
            each.push((policy.id().clone(), r));
        }
    }
    (all, each)
}
