//! Spawn latency: `/bin/true` in a full cell (with and without cgroups)
//! versus `std::process::Command`.
//!
//! Run with `cargo bench --bench spawn` (as root). Prints the median and p90
//! of each, and each cell's ratio to `std::process::Command`.

use std::time::{Duration, Instant};

use jobcell::{Command, Limits, Output, Sandbox};

const WARMUP: usize = 50;
const RUNS: usize = 500;

fn measure(name: &str, mut f: impl FnMut()) -> Duration {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[RUNS / 2];
    let p90 = samples[RUNS * 9 / 10];
    println!(
        "{name:<48} median {:>8.1} µs   p90 {:>8.1} µs",
        us(median),
        us(p90)
    );
    median
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let std_median = measure("std::process::Command /bin/true", || {
        let st = std::process::Command::new("/bin/true").status().unwrap();
        assert!(st.success());
    });

    let mut cmd = Command::new("/bin/true");
    cmd.stdout(Output::Discard).stderr(Output::Discard);
    let mut cells: Vec<(&str, Sandbox)> = Vec::new();
    let mut bare = Sandbox::new();
    bare.accounting(false);
    cells.push(("cell, no cgroup", bare));
    cells.push(("cell, usage accounting (default)", Sandbox::new()));
    let mut limited = Sandbox::new();
    limited.limits(Limits {
        memory: Some(256 << 20),
        pids: Some(64),
        cpu_percent: Some(100),
        ..Default::default()
    });
    cells.push(("cell, memory + pids + cpu limits", limited));

    let mut ratios = Vec::new();
    for (name, sb) in &cells {
        let m = measure(&format!("jobcell {name}"), || {
            let job = sb.spawn(&cmd).unwrap();
            assert!(job.wait().unwrap().success());
        });
        ratios.push((name, m.as_secs_f64() / std_median.as_secs_f64()));
    }
    for (name, r) in ratios {
        println!("ratio {name:<40} {r:.2}x std::process::Command");
    }
}
