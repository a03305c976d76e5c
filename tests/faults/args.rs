//! Arguments and environment up to the kernel's limit (a property test).

use super::*;

// Arguments and environment.

/// Up to the kernel's own limits (`MAX_ARG_STRLEN` per string, a quarter of
/// the stack limit in all), arguments and variables reach the job; beyond,
/// a typed error before anything runs.
#[test]
fn arguments_and_environment_up_to_the_kernels_limit() {
    let _g = common::exclusive();
    let sb = Sandbox::new();
    // Many small ones: the job counts them.
    for n in [194, 1000, 20_000] {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $#", "sh"]);
        cmd.args((0..n).map(|i| format!("a{i}")));
        for i in 0..n {
            cmd.env(format!("V{i}"), "x");
        }
        let ran = collect(&sb.spawn(&cmd).unwrap_or_else(|e| panic!("{n}: {e}")));
        assert_eq!(ran.stdout, format!("{n}\n"), "{n}: {}", ran.stderr);
    }
    // The longest single string the kernel takes (with its NUL).
    let long = "y".repeat(128 * 1024 - 1);
    let ran = collect(
        &sb.spawn(Command::new("sh").args(["-c", "echo ${#1}", "sh", &long]))
            .unwrap(),
    );
    assert_eq!(ran.stdout, format!("{}\n", long.len()));
    let ran = collect(
        &sb.spawn(
            Command::new("sh")
                .args(["-c", "echo ${#BIG}"])
                .env("BIG", &long[4..]),
        )
        .unwrap(),
    );
    assert_eq!(ran.stdout, format!("{}\n", long.len() - 4));

    let before = settled();
    let cgroups_before = job_cgroups();
    let too_long = "y".repeat(128 * 1024);
    let e = sb.spawn(Command::new("true").arg(&too_long)).unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("argument 1"), "{e}");
    let e = sb
        .spawn(Command::new("true").env("BIG", &too_long))
        .unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("BIG"), "{e}");
    // In all: 100 strings of 100 KiB are beyond any stack limit's quarter here.
    let mut cmd = Command::new("true");
    cmd.args((0..100).map(|_| &long[..100 * 1024]));
    let e = sb.spawn(&cmd).unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }), "{e}");
    nothing_left(&before, &cgroups_before, "refused arguments");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Real spawns over argument and environment counts and sizes, binds,
    /// limits and rlimits: a spawn either runs its job, which sees exactly
    /// what it was given, or is refused before anything runs; never a
    /// failure in the cell.
    #[test]
    fn spawns_run_as_planned_or_are_refused(
        args in proptest::collection::vec("[a-z0-9]{0,40}", 0..3000),
        env in proptest::collection::vec("[a-z0-9 ]{0,64}", 0..1500),
        large in proptest::option::of(0usize..140_000),
        bind_rw in proptest::prelude::any::<bool>(),
        memory in proptest::option::of(16u64..512),
        pids in proptest::option::of(0u64..64),
        files in proptest::option::of((16u64..1024, 16u64..1024)),
    ) {
        let _g = common::shared();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("f"), "bound\n").unwrap();
        let mut sb = Sandbox::new();
        match bind_rw {
            true => sb.bind_rw(data.path(), "/data"),
            false => sb.bind_ro(data.path(), "/data"),
        };
        sb.limits(Limits {
            memory: memory.map(|m| m << 20),
            pids,
            ..Default::default()
        });
        if let Some((a, b)) = files {
            sb.rlimit(Rlimit::OpenFiles, a.min(b), a.max(b));
        }
        let mut cmd = Command::new("sh");
        // Builtins only: under a pids limit of 1 (the shell alone) the job
        // cannot fork, and that is the limit working, not a failed plan.
        cmd.args(["-c", "echo $# ${#V0} ${#LARGE}; read l < /data/f; echo $l", "sh"])
            .args(&args);
        for (i, v) in env.iter().enumerate() {
            cmd.env(format!("V{i}"), v);
        }
        let large_len = large.unwrap_or(0);
        if large.is_some() {
            cmd.env("LARGE", "x".repeat(large_len));
        }
        match sb.spawn(&cmd) {
            Ok(job) => {
                let ran = collect(&job);
                let v0 = env.first().map_or(0, String::len);
                proptest::prop_assert_eq!(
                    ran.stdout,
                    format!("{} {v0} {large_len}\nbound\n", args.len()),
                    "{:?} {}", ran.outcome, ran.stderr
                );
            }
            Err(e) => {
                let expected = matches!(pids, Some(0))
                    || matches!(e, Error::ArgumentsTooLarge { .. });
                proptest::prop_assert!(expected, "refused: {}", e);
            }
        }
    }
}
