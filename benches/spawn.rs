//! Spawn latency: `/bin/true` in a full cell (without a cgroup, with the
//! default usage accounting, with memory + pids + CPU limits, and with
//! those limits but no accounting: only the limits' controllers, as
//! `benches/floor.c` does) versus `std::process::Command`.
//!
//! Run with `cargo bench --bench spawn` (as root). The variants are measured
//! interleaved (one of each per round), so a noisy machine disturbs them
//! alike; the ratios compare medians. A last round repeats the cell without
//! a cgroup after the process has touched 1 GiB of heap: cells are cloned
//! from a small spawner process, so their cost must not grow with the
//! host's memory (cloning from the host cost ~33 ms per GiB here).
//!
//! Last, when a C compiler is at hand, `benches/floor.c` runs: the least a
//! program can do for the same cell, hand-written in C, as the floor these
//! ratios are judged against.

use std::time::{Duration, Instant};

use jobcell::{Command, Limits, Output, Sandbox};

const WARMUP: usize = 30;
const ROUNDS: usize = 400;

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut cmd = Command::new("/bin/true");
    cmd.stdout(Output::Discard).stderr(Output::Discard);
    let mut bare = Sandbox::new();
    bare.accounting(false);
    let mut limited = Sandbox::new();
    limited.limits(Limits {
        memory: Some(256 << 20),
        pids: Some(64),
        cpu_percent: Some(100),
        ..Default::default()
    });
    let mut limits_only = limited.clone();
    limits_only.accounting(false);
    let cells: Vec<(&str, Sandbox)> = vec![
        ("cell, no cgroup", bare),
        ("cell, usage accounting (default)", Sandbox::new()),
        ("cell, memory + pids + cpu limits", limited),
        ("cell, those limits, no accounting", limits_only),
    ];

    let run_std = || {
        let t = Instant::now();
        assert!(std::process::Command::new("/bin/true")
            .status()
            .unwrap()
            .success());
        t.elapsed()
    };
    let run_cell = |sb: &Sandbox| {
        let t = Instant::now();
        let job = sb.spawn(&cmd).unwrap();
        assert!(job.wait().unwrap().success());
        t.elapsed()
    };
    for _ in 0..WARMUP {
        run_std();
        for (_, sb) in &cells {
            run_cell(sb);
        }
    }
    let mut std_samples = Vec::with_capacity(ROUNDS);
    let mut cell_samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cells.len()];
    for _ in 0..ROUNDS {
        std_samples.push(run_std());
        for (i, (_, sb)) in cells.iter().enumerate() {
            cell_samples[i].push(run_cell(sb));
        }
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() * 9 / 10])
    };
    let (std_median, std_p90) = stats(&mut std_samples);
    let big_host = {
        let heap = vec![1u8; 1 << 30];
        let mut std_big = Vec::with_capacity(ROUNDS / 4);
        let mut cell_big = Vec::with_capacity(ROUNDS / 4);
        for _ in 0..ROUNDS / 4 {
            std_big.push(run_std());
            cell_big.push(run_cell(&cells[0].1));
        }
        assert_eq!(std::hint::black_box(&heap)[1 << 29], 1);
        (stats(&mut std_big).0, stats(&mut cell_big).0)
    };
    println!(
        "{:<40} median {:>8.1} µs   p90 {:>8.1} µs",
        "std::process::Command /bin/true",
        us(std_median),
        us(std_p90)
    );
    let report = |name: &str, m: Duration, p90: Duration, base: Duration| {
        println!(
            "{:<40} median {:>8.1} µs   p90 {:>8.1} µs   {:.2}x std::process::Command",
            name,
            us(m),
            us(p90),
            m.as_secs_f64() / base.as_secs_f64()
        );
    };
    for ((name, _), samples) in cells.iter().zip(cell_samples.iter_mut()) {
        let (m, p90) = stats(samples);
        report(&format!("jobcell {name}"), m, p90, std_median);
    }
    let (std_big, cell_big) = big_host;
    println!(
        "with 1 GiB of host heap: std::process::Command median {:>8.1} µs, \
         jobcell cell, no cgroup median {:>8.1} µs ({:.2}x)",
        us(std_big),
        us(cell_big),
        cell_big.as_secs_f64() / std_big.as_secs_f64()
    );
    c_floor();
}

/// Builds and runs benches/floor.c, if `cc` is there.
fn c_floor() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/floor.c");
    let Ok(dir) = tempfile::tempdir() else { return };
    let bin = dir.path().join("floor");
    let built = std::process::Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(src)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        println!("C floor: skipped (no C compiler)");
        return;
    }
    match std::process::Command::new(&bin).arg("200").output() {
        Ok(o) => print!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("C floor: {e}"),
    }
}
