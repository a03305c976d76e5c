//! Spawn latency: `/bin/true` in a full cell versus `std::process::Command`.
//!
//! Run with `cargo bench --bench spawn`. Prints the median (and p90) of each
//! and the ratio. Root is needed for the cell (a range id mapping).

use std::time::{Duration, Instant};

use jobcell::{Command, Output, Sandbox};

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
        "{name:<40} median {:>8.1} µs   p90 {:>8.1} µs",
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

    let sandbox = Sandbox::new();
    let mut cmd = Command::new("/bin/true");
    cmd.stdout(Output::Discard).stderr(Output::Discard);
    let cell_median = measure("jobcell cell /bin/true", || {
        let job = sandbox.spawn(&cmd).unwrap();
        assert!(job.wait().unwrap().success());
    });
    println!(
        "ratio cell / std: {:.2}x",
        cell_median.as_secs_f64() / std_median.as_secs_f64()
    );
}
