//! The integration tests' shared helpers (each test file says `mod common;`), in layers; each
//! uses only the ones listed before it:
//!
//! - [`paths`]: the repository, `../shared`, AWS sample events, the tools `.ci/run` installs,
//!   fresh temporary directories and `copy_dir`;
//! - [`iam`]: the tests' own IAM policy evaluator; [`exactness`]: the route-wide policy's
//!   exactness check on one case (the property tests' and the IAM fuzz target's oracle);
//! - [`tokens`]: tokens signed with the reference workloads' test key, the environments that
//!   trust them, and `cedargate token`;
//! - [`events`]: API Gateway authorizer events (a minimal REST TOKEN event for the demo API, and
//!   the AWS samples with real tokens put in);
//! - [`bundles`]: temporary copies of the repository's bundle, the gateway bundle, `publish`;
//! - [`processes`]: free ports and the long-running children (the Lambda runtime emulator, the
//!   S3 server, `cedargate invoke`, `cedargate serve`), each killed when dropped.
//!
//! Everything is re-exported here: tests import from `common::`, never from a submodule.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

// In layer order (see above).
pub mod paths;
pub mod iam;
pub mod exactness;
pub mod tokens;
pub mod events;
pub mod bundles;
pub mod processes;

// A test binary uses only some of them: the others are not an error.
#[allow(unused_imports)]
pub use {bundles::*, events::*, iam::*, paths::*, processes::*, tokens::*};
