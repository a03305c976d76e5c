//! The online-judge example (`examples/judge.rs`) on its bundled demo.

mod support;

use std::process::{Command, Output};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/judge-demo");
const TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/judge-demo/tests");

fn judge(args: &[&str]) -> Output {
    Command::new(support::example("judge"))
        .args(args)
        .output()
        .expect("run the judge")
}

/// The verdict column of each test line.
fn verdicts(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("accepted"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_demo_solution_is_accepted() {
    let o = judge(&["--source", DEMO, TESTS, "--", "sh", "sum.sh"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(verdicts(&o), ["AC", "AC"], "{out}");
    assert!(out.ends_with("2/2 accepted\n"), "{out}");
}

#[test]
fn each_verdict_from_its_job_state() {
    let cases: [(&[&str], &str); 6] = [
        (&["--", "sh", "-c", "echo 3"], "WA"),
        (
            &["--time", "300ms", "--", "sh", "-c", "while :; do :; done"],
            "TLE",
        ),
        (&["--wall", "500ms", "--", "sleep", "30"], "TLE"),
        (
            &[
                "--memory",
                "16M",
                "--",
                "sh",
                "-c",
                "x=$(head -c 67108864 /dev/zero | tr '\\0' x); echo ${#x}",
            ],
            "MLE",
        ),
        (&["--output", "1K", "--", "yes"], "OLE"),
        (&["--", "sh", "-c", "kill -SEGV $$"], "RE"),
    ];
    for (args, want) in cases {
        let mut a = vec![TESTS];
        a.extend_from_slice(args);
        let o = judge(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(
            verdicts(&o),
            [want, want],
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn compile_errors_and_a_compiled_solution() {
    let o = judge(&[
        "--source",
        DEMO,
        "--compile",
        "exit 3",
        TESTS,
        "--",
        "./sum",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("CE"));
    if !std::path::Path::new("/usr/bin/cc").exists() {
        eprintln!("no C compiler on this host: the compiled solution is not tried");
        return;
    }
    let o = judge(&[
        "--source",
        DEMO,
        "--compile",
        "cc -O2 -o /build/sum /src/sum.c",
        TESTS,
        "--",
        "./sum",
    ]);
    assert_eq!(
        verdicts(&o),
        ["AC", "AC"],
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
