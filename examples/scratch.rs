fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sb = jobcell::Sandbox::new();
    sb.hostname("cell");
    let mut cmd = jobcell::Command::new(&args[0]);
    cmd.args(&args[1..]);
    let job = match sb.spawn(&cmd) { Ok(j) => j, Err(e) => { eprintln!("error: {e}"); std::process::exit(1) } };
    for c in job.logs() { print!("{:?}: {}", c.stream, String::from_utf8_lossy(&c.data)); }
    println!("{:?}", job.wait().unwrap());
}
