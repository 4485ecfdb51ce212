//! `gt crew`: overseer workspaces at `<rig>/crew/<name>/`, with a clone at
//! `rig/`, reached by mail, listed by `gt crew list` and `gt status`, and
//! never touched by the Witness.

use serde_json::Value;

use crate::common::{TestEnv, git};

#[test]
fn crew_add_makes_a_workspace_that_mail_reaches_and_status_lists() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let home = rig.join("crew/dave");
    let out = env.ok("gt", &["crew", "add", "r", "dave"]);
    assert_eq!(
        out,
        format!(
            "added crew r/crew/dave at {}; work in {}\n",
            home.display(),
            home.join("rig").display()
        )
    );
    // A clone of the rig's origin, on its default branch.
    let clone = home.join("rig");
    let seen = (
        git(&clone, &["branch", "--show-current"]),
        std::fs::read_to_string(clone.join("README")).unwrap(),
        git(&clone, &["remote", "get-url", "origin"]),
    );
    let origin = env.path().join("r-origin.git");
    assert_eq!(
        seen,
        (
            "main\n".into(),
            "r-origin\n".into(),
            format!("{}\n", origin.display())
        )
    );
    let state = env.state(&home);
    assert_eq!(state["role"], "crew");
    assert!(!env.town.join(".staging").exists());

    env.ok(
        "gt",
        &[
            "send",
            "r/crew/dave",
            "-s",
            "hello",
            "-m",
            "the tests are red",
        ],
    );
    let mail = env.inbox(&home);
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["to"], "r/crew/dave");
    assert_eq!(mail[0]["subject"], "hello");

    let listed = env.ok("gt", &["crew", "list", "r"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.lines().nth(1).unwrap().starts_with("r/crew/dave "),
        "{listed}"
    );
    let rows: Value =
        serde_json::from_str(&env.ok("gt", &["crew", "list", "r", "--json"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["address"], "r/crew/dave");
    assert_eq!(rows[0]["role"], "crew");
    assert_eq!(rows[0]["unread"], 1);

    let status: Value = serde_json::from_str(&env.ok("gt", &["status", "--json"])).unwrap();
    let dave: Vec<&Value> = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["address"] == "r/crew/dave")
        .collect();
    assert_eq!(dave.len(), 1, "{status}");
    assert_eq!(dave[0]["role"], "crew");
    let text = env.ok("gt", &["status"]);
    assert!(text.lines().any(|l| l.contains("r/crew/dave")), "{text}");

    env.add_rig("s");
    assert_eq!(env.ok("gt", &["crew", "list", "s"]), "no crew in rig s\n");
}

#[test]
fn crew_names_are_checked_like_polecats_and_refusals_are_one_line() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.ok("gt", &["crew", "add", "r", "dave"]);
    let cases = [
        (
            "dave",
            format!(
                "gt: crew r/crew/dave already exists at {}\n",
                rig.join("crew/dave").display()
            ),
        ),
        (
            "witness",
            "gt: invalid crew name \"witness\": it is reserved\n".to_string(),
        ),
    ];
    for (name, expected) in cases {
        let (code, err) = env.fails("gt", &["crew", "add", "r", name]);
        assert_eq!((code, err), (2, expected), "{name}");
    }
    for bad in ["-x", "a/b", "..", "dave smith", &"x".repeat(65)] {
        let (code, err) = env.fails("gt", &["crew", "add", "r", "--", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.starts_with("gt: invalid crew name "), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
    }
    let (code, err) = env.fails("gt", &["crew", "add", "nope", "dave"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(rig.join("crew"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dave"], "refusals make nothing");
    assert!(!env.town.join(".staging").exists());
}

/// A crew member that looks like a stuck worker (working on an issue, no
/// session, silent for a day) is left alone by the Witness; a polecat in the
/// same state is not.
#[test]
fn the_witness_never_touches_crew() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.ok("gt", &["crew", "add", "r", "dave"]);
    env.ok("gt", &["polecat", "add", "r", "Nux"]);
    let id = env.issue("r", "work");
    for home in [rig.join("crew/dave"), rig.join("polecats/Nux")] {
        env.edit_state(&home, |s| {
            s["status"] = "working".into();
            s["issue"] = id.clone().into();
        });
    }
    let dave_state = std::fs::read(rig.join("crew/dave/state.json")).unwrap();
    let mut day_later = env.cmd("gt");
    day_later
        .env("GT_NOW", "2026-11-26T09:00:00Z")
        .args(["witness", "patrol", "r", "--json"]);
    let actions = crate::common::action_pairs(&crate::common::ok_output(&mut day_later));
    assert!(
        actions.iter().any(|(_, who)| who == "r/Nux"),
        "the polecat is acted on: {actions:?}"
    );
    assert!(
        actions.iter().all(|(_, who)| !who.contains("crew")),
        "{actions:?}"
    );
    assert_eq!(
        std::fs::read(rig.join("crew/dave/state.json")).unwrap(),
        dave_state
    );
    assert_eq!(env.inbox(rig.join("crew/dave")), Vec::<Value>::new());
}
