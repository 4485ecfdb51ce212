//! Names across rigs: a bare polecat name resolves in the caller's rig, else in
//! the one rig that has it; ambiguity and typos are one-line refusals.

use crate::common::TestEnv;

/// Rigs `alpha` and `bravo`, both with a polecat Nux, and Toast in bravo only.
fn two_rigs() -> TestEnv {
    let env = TestEnv::new();
    for rig in ["alpha", "bravo"] {
        let _ = env.add_rig(rig);
        env.ok("gt", &["polecat", "add", rig, "Nux"]);
    }
    env.ok("gt", &["polecat", "add", "bravo", "Toast"]);
    env
}

#[test]
fn a_bare_name_resolves_in_the_callers_rig_or_the_one_rig_that_has_it() {
    let env = two_rigs();
    assert_eq!(env.ok("gt", &["sleep", "Toast"]), "bravo/Toast is asleep\n");
    assert_eq!(env.state("bravo/polecats/Toast")["status"], "asleep");
    let out = env
        .cmd("gt")
        .args(["sleep", "Nux"])
        .env("GT_RIG", "alpha")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alpha/Nux is asleep\n"
    );
    let out = env
        .cmd("gt")
        .args(["sleep", "Nux"])
        .current_dir(env.town.join("bravo/refinery/rig"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bravo/Nux is asleep\n"
    );
}

#[test]
fn ambiguous_missing_and_malformed_bare_names_are_refused() {
    let env = two_rigs();
    for (args, want) in [
        (
            &["sleep", "Nux"][..],
            "gt: Nux is ambiguous: alpha/Nux, bravo/Nux; pass --rig or the full address\n",
        ),
        (
            &["wake", "Nope"][..],
            "gt: no polecat \"Nope\" in any rig (alpha, bravo)\n",
        ),
        (
            &["kill", "Toas"][..],
            "gt: no polecat \"Toas\" in any rig (alpha, bravo) (did you mean Toast?)\n",
        ),
        (
            &["sleep", ".x"][..],
            "gt: invalid polecat name \".x\": use 1-64 letters, digits, '_' or '-', starting with a letter or digit\n",
        ),
        (
            &["sleep", "witness"][..],
            "gt: invalid polecat name \"witness\": it is reserved\n",
        ),
        (
            &["plugin", "status", "Nux"][..],
            "gt: no plugin \"Nux\" in any rig (alpha, bravo)\n",
        ),
    ] {
        assert_eq!(env.fails("gt", args), (2, want.to_string()), "{args:?}");
    }
    // Nothing was changed by a refusal.
    for home in [
        "alpha/polecats/Nux",
        "bravo/polecats/Nux",
        "bravo/polecats/Toast",
    ] {
        assert_eq!(env.state(home)["status"], "idle", "{home}");
    }
}
