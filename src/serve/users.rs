//! The demo users of the development issuer: one per interesting path through the demo bundle
//! (`schema/api.cedarschema`, `policies/`, `entities/roles.json`).
//!
//! Their tokens carry Auth0-shaped claims: the namespaced roles claim an Auth0 post-login Action
//! adds, the OAuth `scope` string and the RBAC `permissions` array. A bundle with other claim
//! names still works with `serve`; these users then simply map to fewer entities.

/// The namespaced custom claim that holds the roles (as the demo schema's `@claim` says).
pub const ROLES_CLAIM: &str = "https://cedargate.example/roles";

/// One demo user.
#[derive(Debug, Clone, Copy)]
pub struct DemoUser {
    /// The name used on the command line (`cedargate token --user reader`).
    pub login: &'static str,
    pub name: &'static str,
    pub sub: &'static str,
    pub email: &'static str,
    pub roles: &'static [&'static str],
    /// API scopes (beyond `openid profile email`); also the RBAC `permissions`.
    pub scopes: &'static [&'static str],
    /// What the demo policies let this user do, for the sign-in page.
    pub about: &'static str,
}

pub const USERS: &[DemoUser] = &[
    DemoUser {
        login: "reader",
        name: "Rita Reader",
        sub: "dev|rita",
        email: "rita@cedargate.example",
        roles: &["reader"],
        scopes: &[],
        about: "Reads pets; everything else is denied.",
    },
    DemoUser {
        login: "editor",
        name: "Eddie Editor",
        sub: "dev|eddie",
        email: "eddie@cedargate.example",
        roles: &["editor"],
        scopes: &[],
        about: "Reads and writes pets (editor inherits reader).",
    },
    DemoUser {
        login: "admin",
        name: "Ada Admin",
        sub: "dev|ada",
        email: "ada@cedargate.example",
        roles: &["admin"],
        scopes: &["delete:pets", "read:reports"],
        about: "Everything: the admin role plus the delete:pets and read:reports scopes.",
    },
    DemoUser {
        login: "operator",
        name: "Omar Operator",
        sub: "dev|omar",
        email: "omar@cedargate.example",
        roles: &["admin"],
        scopes: &[],
        about: "Admin role without the delete:pets scope: the forbid policy blocks deleting.",
    },
    DemoUser {
        login: "analyst",
        name: "Ana Analyst",
        sub: "dev|ana",
        email: "ana@cedargate.example",
        roles: &[],
        scopes: &["read:reports"],
        about: "No role, only the read:reports scope: reports, nothing about pets.",
    },
    DemoUser {
        login: "guest",
        name: "Gus Guest",
        sub: "dev|gus",
        email: "gus@cedargate.example",
        roles: &[],
        scopes: &[],
        about: "Signed in, no roles, no scopes: only the private endpoint.",
    },
];

/// The demo user with this login name.
pub fn find(login: &str) -> Option<&'static DemoUser> {
    USERS.iter().find(|u| u.login == login)
}

/// `reader, editor, …`: for error messages.
pub fn logins() -> String {
    USERS.iter().map(|u| u.login).collect::<Vec<_>>().join(", ")
}
