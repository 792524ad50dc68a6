//! Runners on other machines (here: other folders): `quire runner` processes lease mission steps
//! from one daemon, fetch sandboxes from the vault's bare remote, run them, and push their results
//! there; the daemon lands what is current, refuses what is late, and keeps it as salvage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{Daemon, get_json, http, start, token, wait_until};
use crate::harness::{VaultTest, isolated};
use crate::missions::{brief, engine_vault, toml_string};

/// A runner process, killed when dropped.
pub(crate) struct Runner(pub(crate) Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A vault whose steps all go to runners, with a bare remote beside it, and `lease` for leases.
pub(crate) fn runner_vault(commands: &[(&str, &str)], lease: &str) -> (VaultTest, PathBuf) {
    let t = engine_vault(commands);
    let remote = t.tmp.path().join("remote.git");
    let out = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&remote)
        .output()
        .unwrap();
    assert!(out.status.success());
    let toml = t
        .read("quire.toml")
        .replace(
            "[git]\n",
            &format!(
                "[git]\nremote = {}\n",
                toml_string(remote.to_str().unwrap())
            ),
        )
        .replace("[missions]\n", "[missions]\nlocal = false\n")
        + &format!("\n[runners]\nlease = \"{lease}\"\n");
    t.commit(&[("quire.toml", &toml)], "runners");
    (t, remote)
}

/// A runner token for `name`, made with the CLI.
pub(crate) fn runner_token(t: &VaultTest, name: &str) -> String {
    let out = t.quire(&["runner", "token", "new", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `quire runner` in its own folder (its "machine").
pub(crate) fn start_runner(
    t: &VaultTest,
    d: &Daemon,
    token: &str,
    dir: &str,
    slots: u32,
) -> Runner {
    start_runner_with(t, d, token, dir, slots, &[])
}

/// [`start_runner`], with `labels`.
pub(crate) fn start_runner_with(
    t: &VaultTest,
    d: &Daemon,
    token: &str,
    dir: &str,
    slots: u32,
    labels: &[&str],
) -> Runner {
    let workdir = t.tmp.path().join(dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(t.tmp.path())
        .args([
            "runner",
            "--daemon",
            &format!("http://{}", d.addr),
            "--slots",
        ])
        .arg(slots.to_string())
        .arg("--workdir")
        .arg(&workdir)
        .args(if labels.is_empty() {
            Vec::new()
        } else {
            vec!["--labels".to_owned(), labels.join(",")]
        })
        .env("QUIRE_RUNNER_TOKEN", token)
        .stdout(Stdio::null())
        // Kept beside the vault, for a failing test to be read.
        .stderr(std::fs::File::create(t.tmp.path().join(format!("{dir}.log"))).unwrap());
    isolated(&mut cmd, t.tmp.path());
    cmd.env("QUIRE_RUNNER_TOKEN", token)
        .env("QUIRE_LOG", "quire=info");
    Runner(cmd.spawn().unwrap())
}

pub(crate) fn post_brief(d: &Daemon, t: &VaultTest, b: &Value) {
    let auth = format!("Bearer {}", token(t));
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/missions",
        &[("Authorization", &auth)],
        &serde_json::to_vec(b).unwrap(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

pub(crate) fn decisions(d: &Daemon) -> Vec<String> {
    get_json(&d.addr, "/api/decisions").1["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["id"].as_str().map(str::to_owned))
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn runners_in_other_folders_share_the_steps_and_their_work_lands_through_the_remote() {
    let effects = tempfile::tempdir().unwrap();
    let ledger = effects.path().join("effects");
    let (t, remote) = runner_vault(
        &[
            (
                "plan",
                &format!(
                    "echo \"$QUIRE_IDEMPOTENCY_KEY\" >> '{}'; echo planned > PLAN.md; echo plan ran",
                    ledger.display()
                ),
            ),
            (
                "build",
                &format!(
                    "echo \"$QUIRE_IDEMPOTENCY_KEY\" >> '{}'; echo built > BUILD.md",
                    ledger.display()
                ),
            ),
            (
                "check",
                &format!(
                    "echo \"$QUIRE_IDEMPOTENCY_KEY\" >> '{}'; test -f BUILD.md",
                    ledger.display()
                ),
            ),
        ],
        "6s",
    );
    let d = start(&t);
    let _runners: Vec<Runner> = ["box-1", "box-2", "box-3"]
        .iter()
        .map(|name| start_runner(&t, &d, &runner_token(&t, name), name, 1))
        .collect();
    let missions = 60;
    for i in 0..missions {
        post_brief(
            &d,
            &t,
            &brief(
                &format!("m-{i}"),
                json!([{ "step": "plan", "uses": "plan" }, { "step": "build", "uses": "build" }, { "step": "check", "uses": "check" }]),
            ),
        );
    }
    wait_until("every mission's decision", Duration::from_secs(600), || {
        decisions(&d).len() == missions
    });
    // Every step's effect happened exactly once.
    let mut seen = lines(&ledger);
    seen.sort();
    let mut want: Vec<String> = (0..missions)
        .flat_map(|i| ["plan", "build", "check"].map(|s| format!("m-{i}/{s}/1/1")))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    for i in 0..missions {
        assert_eq!(
            t.git(&["show", &format!("mission/m-{i}:PLAN.md")]),
            "planned\n"
        );
        assert_eq!(
            t.git(&["show", &format!("mission/m-{i}:BUILD.md")]),
            "built\n"
        );
        // The daemon's log file has what the runner's step wrote.
        assert!(
            t.read(&format!("07_LOGS/missions/m-{i}/plan.1.1.log"))
                .contains("plan ran")
        );
    }
    // Every machine took work, and the runs say where.
    let mut by = std::collections::BTreeSet::new();
    for i in 0..missions {
        let (_, m) = get_json(&d.addr, &format!("/api/missions/m-{i}"));
        for a in m["attempts"].as_array().unwrap() {
            by.insert(a["runner"].as_str().unwrap_or("").to_owned());
        }
    }
    assert_eq!(
        by.into_iter().collect::<Vec<_>>(),
        ["box-1", "box-2", "box-3"]
    );
    // While their steps ran, the runners brought the remote's main line in (a mission's first
    // step then starts from a commit they have): each has a commit of main there.
    for b in ["box-1", "box-2", "box-3"] {
        let work = t.tmp.path().join(b).join("slot-0/work");
        let out = Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["rev-parse", "--verify", "refs/remotes/quire/HEAD"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{b} prefetched nothing");
        let at = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        t.git(&["merge-base", "--is-ancestor", &at, "main"]);
    }
    let (_, r) = get_json(&d.addr, "/api/runners");
    assert_eq!(r["runners"].as_array().unwrap().len(), 3, "{r}");
    // Approved: the promotion lands on main, and main reaches the remote.
    let auth = format!("Bearer {}", token(&t));
    let (status, _, _) = http(
        &d.addr,
        "POST",
        "/api/decisions/m-0.r1/resolve",
        &[("Authorization", &auth)],
        br#"{"decision": "approve"}"#,
    );
    assert_eq!(status, 200);
    wait_until(
        "main on the remote with the promotion",
        Duration::from_secs(30),
        || {
            let out = Command::new("git")
                .arg("-C")
                .arg(&remote)
                .args(["show", "main:BUILD.md"])
                .output()
                .unwrap();
            out.status.success()
        },
    );
    // No result was left behind on the remote.
    let out = Command::new("git")
        .arg("-C")
        .arg(&remote)
        .args(["for-each-ref", "refs/quire/runs/"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn a_revoked_or_wrong_token_is_refused_and_a_runner_token_moves_nothing_else() {
    let (t, _remote) = runner_vault(&[("plan", "echo planned > PLAN.md")], "6s");
    let d = start(&t);
    let good = runner_token(&t, "box-1");
    let lease = |tok: &str| {
        http(
            &d.addr,
            "POST",
            "/api/runners/lease",
            &[("Authorization", &format!("Bearer {tok}"))],
            br#"{"labels": [], "wait_ms": 0}"#,
        )
        .0
    };
    assert_eq!(lease(&good), 204);
    // The API token is not a runner token, and a runner token is not the API token.
    assert_eq!(lease(&token(&t)), 401);
    assert_eq!(lease("quire-runner-0000"), 401);
    let (status, _, _) = http(
        &d.addr,
        "POST",
        "/api/missions",
        &[("Authorization", &format!("Bearer {good}"))],
        &serde_json::to_vec(&brief("m-1", json!([{ "step": "plan", "uses": "plan" }]))).unwrap(),
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(
        &d.addr,
        "POST",
        "/api/decisions/m-1.r1/resolve",
        &[("Authorization", &format!("Bearer {good}"))],
        br#"{"decision": "approve"}"#,
    );
    assert_eq!(status, 401);
    // Revoked: refused at once, and a runner started with it stops and says why.
    let out = t.quire(&["runner", "token", "revoke", "box-1"]);
    assert!(out.status.success());
    assert_eq!(lease(&good), 401);
    let mut r = start_runner(&t, &d, &good, "box-1", 1);
    let mut status = None;
    for _ in 0..100 {
        status = r.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        status.is_some_and(|s| !s.success()),
        "the runner kept going: {status:?}"
    );
    // A step nobody can take waits, visibly.
    post_brief(
        &d,
        &t,
        &brief(
            "m-2",
            json!([{ "step": "plan", "uses": "plan", "runs_on": ["gpu"] }]),
        ),
    );
    wait_until(
        "the step to wait for a runner",
        Duration::from_secs(30),
        || {
            let (_, r) = get_json(&d.addr, "/api/runners");
            r["waiting"].as_array().is_some_and(|w| {
                w.iter()
                    .any(|x| x["mission"] == "m-2" && x["labels"] == json!(["gpu"]))
            })
        },
    );
}

/// Each attempt of `mission`, as (runner, state).
fn attempts(d: &Daemon, mission: &str) -> Vec<(String, String)> {
    let (_, m) = get_json(&d.addr, &format!("/api/missions/{mission}"));
    m["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{m}"))
        .iter()
        .map(|a| {
            (
                a["runner"].as_str().unwrap_or("").to_owned(),
                a["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// `git fsck` is clean on the vault and on its bare remote.
fn fsck_both(t: &VaultTest, remote: &Path) {
    t.git(&["fsck", "--no-progress"]);
    let out = Command::new("git")
        .arg("-C")
        .arg(remote)
        .args(["fsck", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A step whose first attempt notes its pid in `pids` and hangs; a later one writes its key.
fn first_attempt_hangs(pids: &Path) -> String {
    format!(
        "if [ \"$QUIRE_ATTEMPT\" = 1 ]; then echo $$ > {}; echo started; sleep 60; fi; echo \"$QUIRE_IDEMPOTENCY_KEY\" > OUT.md",
        pids.display()
    )
}

/// The pid a step noted in `path`, once it has.
fn pid_in(path: &Path) -> u32 {
    let mut pid = 0;
    wait_until("the step to note its pid", Duration::from_secs(30), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid > 0
    });
    pid
}

fn signal(r: &Runner, sig: &str) {
    let out = Command::new("kill")
        .args([sig, &r.0.id().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// Whether process `pid` still runs: a zombie waiting for whoever adopted it to reap it does not.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn agent_on(d: &Daemon, mission: &str, runner: &str) -> bool {
    let (_, a) = get_json(&d.addr, "/api/agents");
    a["agents"].as_array().is_some_and(|a| {
        a.iter().any(|x| {
            x["mission"] == mission
                && x["runs_on"] == format!("runner:{runner}")
                && x["alive"] == true
                && x["last_line"] == "started"
        })
    })
}

#[test]
fn a_runner_cut_off_past_its_lease_loses_the_step_and_its_late_result_is_salvaged() {
    let (t, remote) = runner_vault(
        &[(
            "slow",
            "echo started; sleep 2; echo \"$QUIRE_IDEMPOTENCY_KEY\" > OUT.md",
        )],
        "2s",
    );
    let d = start(&t);
    let r1 = start_runner(&t, &d, &runner_token(&t, "box-1"), "box-1", 1);
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "slow", "uses": "slow" }])),
    );
    wait_until("box-1 to run the step", Duration::from_secs(30), || {
        agent_on(&d, "m-1", "box-1")
    });
    // Cut off (stopped, as a machine that froze or lost its network), past its lease.
    signal(&r1, "-STOP");
    let _r2 = start_runner(&t, &d, &runner_token(&t, "box-2"), "box-2", 1);
    wait_until(
        "the step to be done again, on box-2",
        Duration::from_secs(60),
        || decisions(&d) == ["m-1.r1"],
    );
    assert_eq!(t.git(&["show", "mission/m-1:OUT.md"]), "m-1/slow/1/2\n");
    assert_eq!(
        attempts(&d, "m-1"),
        [
            ("box-1".to_owned(), "lost".to_owned()),
            ("box-2".to_owned(), "succeeded".to_owned())
        ]
    );
    // Back: its result comes too late, is refused, and is kept.
    signal(&r1, "-CONT");
    wait_until(
        "the late result to be salvaged",
        Duration::from_secs(60),
        || {
            t.git_output(&[
                "rev-parse",
                "--verify",
                "-q",
                "refs/quire/salvage/m-1/slow.1.1.late",
            ])
            .status
            .success()
        },
    );
    assert_eq!(
        t.git(&["show", "refs/quire/salvage/m-1/slow.1.1.late:OUT.md"]),
        "m-1/slow/1/1\n"
    );
    assert_eq!(t.git(&["show", "mission/m-1:OUT.md"]), "m-1/slow/1/2\n");
    fsck_both(&t, &remote);
}

#[test]
fn a_runner_killed_mid_step_takes_its_step_with_it_and_the_step_runs_again() {
    let pids = tempfile::NamedTempFile::new().unwrap();
    let (t, _remote) = runner_vault(&[("slow", &first_attempt_hangs(pids.path()))], "2s");
    let d = start(&t);
    let tok = runner_token(&t, "box-1");
    let r1 = start_runner(&t, &d, &tok, "box-1", 1);
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "slow", "uses": "slow" }])),
    );
    let step = pid_in(pids.path());
    let alive = running;
    // kill -9: the runner cannot end its step itself, but nothing it started outlives it (the
    // kernel tells the step's wrapper, which ends the group).
    drop(r1);
    wait_until(
        "the step to end with its runner",
        Duration::from_secs(30),
        || !alive(step),
    );
    // Back in the same folder: the lease having run out, the step runs again and lands.
    let _r1 = start_runner(&t, &d, &tok, "box-1", 1);
    wait_until("the retry to land", Duration::from_secs(60), || {
        decisions(&d) == ["m-1.r1"]
    });
    assert_eq!(t.git(&["show", "mission/m-1:OUT.md"]), "m-1/slow/1/2\n");
    let states: Vec<String> = attempts(&d, "m-1").into_iter().map(|a| a.1).collect();
    assert_eq!(states, ["lost", "succeeded"]);
}

#[test]
fn a_daemon_killed_while_a_runner_works_adopts_the_step_on_restart() {
    let effects = tempfile::tempdir().unwrap();
    let ledger = effects.path().join("effects");
    let (t, _remote) = runner_vault(
        &[(
            "slow",
            &format!(
                "echo \"$QUIRE_IDEMPOTENCY_KEY\" >> '{}'; echo started; sleep 3; echo done > OUT.md",
                ledger.display()
            ),
        )],
        "10s",
    );
    let d = start(&t);
    let addr = d.addr.clone();
    let _r1 = start_runner(&t, &d, &runner_token(&t, "box-1"), "box-1", 1);
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "slow", "uses": "slow" }])),
    );
    wait_until("box-1 to run the step", Duration::from_secs(30), || {
        agent_on(&d, "m-1", "box-1")
    });
    // kill -9 of the daemon; back on the same address while the step runs.
    drop(d);
    let d = crate::daemon::start_on(&t, &addr, &[], Stdio::null());
    wait_until("the decision", Duration::from_secs(60), || {
        decisions(&d) == ["m-1.r1"]
    });
    assert_eq!(lines(&ledger), ["m-1/slow/1/1"]);
    assert_eq!(t.git(&["show", "mission/m-1:OUT.md"]), "done\n");
    let (_, m) = get_json(&d.addr, "/api/missions/m-1");
    assert_eq!(m["attempts"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["attempts"][0]["state"], "succeeded");
}

#[test]
fn every_bad_word_from_a_runner_is_refused_with_its_code_and_the_step_still_lands() {
    let (t, remote) = runner_vault(&[("work", "echo hi > OUT.md")], "30s");
    let d = start(&t);
    let auth = format!("Bearer {}", runner_token(&t, "hand"));
    let call = |path: &str, body: &[u8]| -> (u16, Value) {
        let (status, _, b) = http(&d.addr, "POST", path, &[("Authorization", &auth)], body);
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    };
    let lease = || {
        let mut job = Value::Null;
        wait_until("an offer to lease", Duration::from_secs(30), || {
            let (s, j) = call("/api/runners/lease", br#"{"wait_ms": 200}"#);
            job = j;
            s == 200
        });
        job
    };
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "work", "uses": "work" }])),
    );
    let main = t.head();
    // A runner by hand: the first lease.
    let job = lease();
    let fence = job["fence"].as_i64().unwrap();
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();

    // The log: a piece past its end is a gap (and says where to send from); a piece sent twice
    // is written once.
    let log = |offset: u64, bytes: &[u8]| {
        call(
            &format!("/api/runners/log?mission=m-1&fence={fence}&offset={offset}"),
            bytes,
        )
    };
    let (s, v) = log(100, b"late\n");
    assert_eq!(
        (s, code(&v), v["length"].as_u64()),
        (409, "log_gap".into(), Some(0))
    );
    assert_eq!(log(0, b"hello\n").1["length"], 6);
    assert_eq!(log(0, b"hello\n").1["length"], 6);
    assert_eq!(t.read("07_LOGS/missions/m-1/work.1.1.log"), "hello\n");

    // A fencing number that is not the lease's, for a heartbeat and for a result.
    let (s, v) = call(
        "/api/runners/heartbeat",
        &serde_json::to_vec(&json!({ "mission": "m-1", "fence": fence + 7 })).unwrap(),
    );
    assert_eq!((s, code(&v)), (409, "fenced".into()), "{v}");
    let outcome = |fields: Value| {
        let mut o = json!({ "mission": "m-1", "fence": fence, "ended": "exited", "exit": 0 });
        for (k, x) in fields.as_object().unwrap() {
            o[k] = x.clone();
        }
        call("/api/runners/complete", &serde_json::to_vec(&o).unwrap())
    };
    let (s, v) = outcome(json!({ "fence": fence + 7 }));
    assert_eq!((s, code(&v)), (404, "not_found".into()), "{v}");
    // A result that is not on the remote, and an ending nobody knows.
    let (s, v) = outcome(json!({ "commit": "0123456789abcdef0123456789abcdef01234567" }));
    assert_eq!((s, code(&v)), (409, "invalid_result".into()), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refs/quire/runs/"),
        "{v}"
    );
    let (s, v) = outcome(json!({ "ended": "vanished" }));
    assert_eq!((s, code(&v)), (409, "invalid_result".into()), "{v}");
    // A commit the vault has, but not this attempt's result: refused.
    let root = t
        .git(&["rev-list", "--max-parents=0", "HEAD"])
        .trim()
        .to_owned();
    let (s, v) = outcome(json!({ "commit": root }));
    assert_eq!((s, code(&v)), (409, "invalid_result".into()), "{v}");
    // Pushed where the result goes, but not work on the sandbox (it does not descend from the
    // start): refused, and dropped from the remote so that the attempt's ref is free again.
    let result_ref = job["result_ref"].as_str().unwrap().to_owned();
    let on_remote = || {
        let out = Command::new("git")
            .arg("-C")
            .arg(&remote)
            .args(["for-each-ref", "--format=%(refname)"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&result_ref)
    };
    t.git(&[
        "push",
        "-q",
        remote.to_str().unwrap(),
        &format!("{root}:{result_ref}"),
    ]);
    assert!(on_remote());
    let (s, v) = outcome(json!({ "commit": root }));
    assert_eq!((s, code(&v)), (409, "invalid_result".into()), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not descend"),
        "{v}"
    );
    assert!(!on_remote(), "the refused result stayed on the remote");
    // The remote away: the result cannot be looked at now, and the runner is told to report
    // again (503), not that its result is wrong.
    let away = t.tmp.path().join("remote.away");
    std::fs::rename(&remote, &away).unwrap();
    let (s, v) = outcome(json!({ "commit": root }));
    std::fs::rename(&away, &remote).unwrap();
    assert_eq!((s, code(&v)), (503, "remote_unreachable".into()), "{v}");
    // None of that moved the step: it still runs under this lease.
    assert_eq!(
        get_json(&d.addr, "/api/missions/m-1").1["mission"]["state"],
        "running"
    );

    // "I could not start it": the same attempt is offered again, and nothing counts as run.
    let (s, v) = outcome(json!({ "ended": "not_started", "why": "disk full" }));
    assert_eq!(s, 200, "{v}");
    let again = lease();
    assert_eq!(
        (again["key"].as_str(), again["attempt"].as_i64()),
        (Some("m-1/work/1/1"), Some(1))
    );
    assert!(again["fence"].as_i64().unwrap() > fence);
    // The old lease's words are refused now; the new one's result lands.
    let (s, _) = outcome(json!({}));
    assert_eq!(s, 404);
    let (s, v) = call(
        "/api/runners/complete",
        &serde_json::to_vec(
            &json!({ "mission": "m-1", "fence": again["fence"], "ended": "exited", "exit": 0 }),
        )
        .unwrap(),
    );
    assert_eq!(s, 200, "{v}");
    wait_until("the decision", Duration::from_secs(30), || {
        decisions(&d) == ["m-1.r1"]
    });
    // Nothing a runner said moved main.
    assert_eq!(t.head(), main);
}

#[test]
fn a_step_for_runners_without_a_remote_escalates_and_says_what_to_set() {
    let t = engine_vault(&[("work", "echo hi > OUT.md")]);
    let toml = t
        .read("quire.toml")
        .replace("[missions]\n", "[missions]\nlocal = false\n");
    t.commit(&[("quire.toml", &toml)], "no local steps, and no remote");
    let d = start(&t);
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "work", "uses": "work" }])),
    );
    wait_until("the escalation", Duration::from_secs(30), || {
        get_json(&d.addr, "/api/missions/m-1").1["mission"]["state"] == "escalated"
    });
    let (_, m) = get_json(&d.addr, "/api/missions/m-1");
    assert!(m.to_string().contains("`[git] remote` is not set"), "{m}");
    assert!(!t.exists("sandbox/m-1/OUT.md"), "it ran here after all");
}

#[test]
fn a_remote_away_while_runners_work_holds_their_work_and_catches_up() {
    let effects = tempfile::tempdir().unwrap();
    let ledger = effects.path().join("effects");
    let (t, remote) = runner_vault(
        &[(
            "slow",
            &format!(
                "echo \"$QUIRE_IDEMPOTENCY_KEY\" >> '{}'; echo started; sleep 2; echo \"$QUIRE_IDEMPOTENCY_KEY\" > OUT.md",
                ledger.display()
            ),
        )],
        "2s",
    );
    let d = start(&t);
    let _r = start_runner(&t, &d, &runner_token(&t, "box-1"), "box-1", 2);
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "slow", "uses": "slow" }])),
    );
    wait_until("box-1 to run the step", Duration::from_secs(30), || {
        agent_on(&d, "m-1", "box-1")
    });

    // The remote goes away mid-step, for several leases: m-1 ends and cannot push its result,
    // m-2 is offered and cannot be fetched, and the vault goes on applying bundles.
    let away = t.tmp.path().join("remote.away");
    std::fs::rename(&remote, &away).unwrap();
    post_brief(
        &d,
        &t,
        &brief("m-2", json!([{ "step": "slow", "uses": "slow" }])),
    );
    crate::remote::a_bundle_applies(&t);
    wait_until(
        "/healthz to say the remote lags",
        Duration::from_secs(30),
        || {
            let (_, h) = get_json(&d.addr, "/healthz");
            h["status"] == "ok" && h["remote"]["in_step"] == false
        },
    );
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        decisions(&d).is_empty(),
        "nothing can land without the remote"
    );

    // Back: both steps land, each run once, and the remote is in step again.
    std::fs::rename(&away, &remote).unwrap();
    wait_until("both decisions", Duration::from_secs(90), || {
        let mut ids = decisions(&d);
        ids.sort();
        ids == ["m-1.r1", "m-2.r1"]
    });
    let mut ran = lines(&ledger);
    ran.sort();
    assert_eq!(ran, ["m-1/slow/1/1", "m-2/slow/1/1"]);
    for m in ["m-1", "m-2"] {
        let states: Vec<String> = attempts(&d, m).into_iter().map(|a| a.1).collect();
        assert_eq!(states, ["succeeded"], "{m}");
        assert_eq!(
            t.git(&["show", &format!("mission/{m}:OUT.md")]),
            format!("{m}/slow/1/1\n")
        );
    }
    wait_until("the remote to catch up", Duration::from_secs(90), || {
        let (_, h) = get_json(&d.addr, "/healthz");
        h["remote"]["in_step"] == true
    });
    fsck_both(&t, &remote);
}

#[test]
fn a_token_revoked_mid_step_ends_the_step_and_the_runner_and_the_step_runs_elsewhere() {
    let pids = tempfile::NamedTempFile::new().unwrap();
    let (t, _remote) = runner_vault(&[("slow", &first_attempt_hangs(pids.path()))], "2s");
    let d = start(&t);
    let mut r1 = start_runner(&t, &d, &runner_token(&t, "box-1"), "box-1", 1);
    post_brief(
        &d,
        &t,
        &brief("m-1", json!([{ "step": "slow", "uses": "slow" }])),
    );
    wait_until("box-1 to run the step", Duration::from_secs(30), || {
        agent_on(&d, "m-1", "box-1")
    });
    let step = pid_in(pids.path());
    let out = t.quire(&["runner", "token", "revoke", "box-1"]);
    assert!(out.status.success());
    // Its next heartbeat is refused: the step is ended with its group, and the runner stops.
    wait_until("box-1 to stop", Duration::from_secs(30), || {
        r1.0.try_wait().unwrap().is_some()
    });
    assert!(!r1.0.try_wait().unwrap().unwrap().success());
    let said = std::fs::read_to_string(t.tmp.path().join("box-1.log")).unwrap();
    assert!(
        !running(step),
        "the step outlived its revoked runner: {said}"
    );
    assert!(
        said.contains("revoked") || said.contains("401") || said.contains("token"),
        "{said}"
    );
    // The lease runs out, and another runner does the step.
    let _r2 = start_runner(&t, &d, &runner_token(&t, "box-2"), "box-2", 1);
    wait_until(
        "the step to land from box-2",
        Duration::from_secs(60),
        || decisions(&d) == ["m-1.r1"],
    );
    assert_eq!(t.git(&["show", "mission/m-1:OUT.md"]), "m-1/slow/1/2\n");
    let attempts: Vec<(String, String)> = attempts(&d, "m-1");
    let attempts: Vec<(&str, &str)> = attempts
        .iter()
        .map(|(r, s)| (r.as_str(), s.as_str()))
        .collect();
    assert_eq!(attempts, [("box-1", "lost"), ("box-2", "succeeded")]);
}
