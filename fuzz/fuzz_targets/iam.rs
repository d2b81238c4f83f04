#![no_main]
//! The route-wide IAM policy builder against the tests' model: from the fuzzer's bytes, a route
//! table (literals, parameters, `{proxy+}`, `ANY`, `$connect`, `$default`), decisions, concrete
//! requests, a stage (`*` included) and a partition; the oracle is the property tests' own
//! exactness check (`tests/common/exactness.rs`): every request that reaches a route must get
//! exactly that route's decision from the policy, in every stage the policy covers.

use arbitrary::{Result, Unstructured};

#[path = "../../tests/common/iam.rs"]
mod iam;
#[path = "../../tests/common/exactness.rs"]
mod exactness;

use exactness::{check, route_name, Case, Tok};

const LITS: [&str; 5] = ["a", "b", "pets", "x", "v1"];
/// Segment values: the table's literals (overlaps), fresh ones, the stage and verbs inside paths,
/// an empty one, and IAM wildcard characters (which must be matched literally).
const VALUES: [&str; 17] = [
    "a", "b", "pets", "x", "v1", "42", "dog", "GET", "history", "prod", "POST", "DELETE", "", "a*",
    "?", "*", "$default",
];

fn template(u: &mut Unstructured) -> Result<Vec<Tok>> {
    let mut segs = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        segs.push(if u.ratio(2, 3)? {
            Tok::Lit((*u.choose(&LITS)?).to_owned())
        } else {
            Tok::Param
        });
    }
    if u.arbitrary()? {
        segs.push(Tok::Proxy);
    }
    Ok(segs)
}

fn case(u: &mut Unstructured) -> Result<Case> {
    let mut routes: Vec<(String, Option<&'static str>, Vec<Tok>)> = Vec::new();
    for _ in 0..u.int_in_range(1..=8)? {
        let verb = *u.choose(&[Some("GET"), Some("POST"), Some("DELETE"), None])?;
        let t = template(u)?;
        // One route per (verb, template shape): a table cannot hold the same route twice.
        let shape = |t: &[Tok]| -> Vec<String> {
            t.iter()
                .map(|x| match x {
                    Tok::Lit(l) => l.clone(),
                    Tok::Param => "{}".into(),
                    Tok::Proxy => "{+}".into(),
                })
                .collect()
        };
        if routes.iter().any(|(_, v, t2)| *v == verb && shape(t2) == shape(&t)) {
            continue;
        }
        routes.push((route_name(verb, &t), verb, t));
    }
    let mut decisions = Vec::new();
    for _ in 0..routes.len() {
        decisions.push(u.arbitrary()?);
    }
    let mut requests = Vec::new();
    for _ in 0..u.int_in_range(1..=40)? {
        let verb = *u.choose(&["GET", "POST", "DELETE", "PUT"])?;
        let mut path = Vec::new();
        for _ in 0..u.int_in_range(0..=5)? {
            path.push((*u.choose(&VALUES)?).to_owned());
        }
        requests.push((verb, path));
    }
    let optional = |u: &mut Unstructured| -> Result<Option<bool>> {
        Ok(if u.ratio(1, 3)? { Some(u.arbitrary()?) } else { None })
    };
    Ok(Case {
        connect: optional(u)?,
        default: optional(u)?,
        target: u.int_in_range(0..=63)?,
        stage: *u.choose(&["prod", "v1", "$default", "*"])?,
        partition: *u.choose(&["aws", "aws-cn", "aws-us-gov"])?,
        routes,
        decisions,
        requests,
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(c) = case(&mut u) {
        if let Err(e) = check(&c) {
            panic!("{e}\n{c:#?}");
        }
    }
});
