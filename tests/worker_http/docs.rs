//! The `console` examples of docs/service.md and the README, run as
//! written against a real server.

use super::*;

/// Every `console` example of docs/service.md and of the README's service
/// section, run with curl against a real server, in order: the ids in the
/// text stand for the jobs the examples create.
#[test]
fn docs_examples_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["docs/service.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let examples = console_examples(&text);
        assert!(examples.len() >= 3, "{doc} has {} examples", examples.len());
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start(dir.path(), &[]);
        let mut ids: Vec<(String, String)> = Vec::new();
        for (cmd, expected) in &examples {
            let post = cmd.contains("-X POST") && !cmd.contains("/stop");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut run = cmd.replace("localhost:8080", &s.addr.to_string());
                let mut want = expected.clone();
                for (doc_id, real) in &ids {
                    run = run.replace(doc_id, real);
                    want = want.replace(doc_id, real);
                }
                let out = Command::new("sh")
                    .args(["-c", &run])
                    .output()
                    .expect("run sh (and curl)");
                let got = String::from_utf8_lossy(&out.stdout).into_owned();
                let result = if out.status.success() {
                    same_output(&want, &got, post, &mut ids)
                } else {
                    Err(format!(
                        "exit {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ))
                };
                match result {
                    Ok(()) => break,
                    Err(_) if !post && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(why) => panic!("{doc}: $ {cmd}\n{why}\nwanted:\n{want}\ngot:\n{got}"),
                }
            }
        }
        s.stop();
    }
}

/// The `$ command` lines of every ```console block, with the lines that
/// follow each as its expected output.
fn console_examples(doc: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```console";
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_string(), String::new()));
        } else if let Some((_, want)) = out.last_mut() {
            want.push_str(line);
            want.push('\n');
        }
    }
    out
}

/// Compares a command's output with the text shown: line by line, JSON as
/// JSON (ids learned, times and usage figures taken as they come; `"…"`
/// stands for any value). `subset`: the answer may hold more than shown (a
/// job that has already ended by the time `POST /jobs` answers).
fn same_output(
    want: &str,
    got: &str,
    subset: bool,
    ids: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let want: Vec<&str> = want.trim_end().lines().collect();
    let got: Vec<&str> = got.trim_end().lines().collect();
    if want.len() != got.len() {
        return Err(format!("{} lines, not {}", got.len(), want.len()));
    }
    for (w, g) in want.iter().zip(&got) {
        let (wp, w) = w.split_at(if w.starts_with("data: {") { 6 } else { 0 });
        let (gp, g) = g.split_at(if g.starts_with("data: {") { 6 } else { 0 });
        if wp != gp {
            return Err(format!("{gp:?} is not {wp:?}"));
        }
        if w.starts_with('{') || w.starts_with('[') {
            let wj: Value = serde_json::from_str(w).map_err(|e| format!("doc JSON {w}: {e}"))?;
            let gj: Value = serde_json::from_str(g).map_err(|e| format!("not JSON {g}: {e}"))?;
            json_match(&wj, &gj, subset, false, ids)?;
        } else if w != g {
            return Err(format!("{g:?} is not {w:?}"));
        }
    }
    Ok(())
}

fn json_match(
    want: &Value,
    got: &Value,
    subset: bool,
    in_limits: bool,
    ids: &mut Vec<(String, String)>,
) -> Result<(), String> {
    const VARYING: &[&str] = &[
        "created_ms",
        "started_ms",
        "ended_ms",
        "wall_time_ms",
        "usage",
        "rusage",
    ];
    match (want, got) {
        (Value::String(w), _) if w == "…" => Ok(()),
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g.get(k).ok_or_else(|| format!("no {k:?} in {got}"))?;
                if (VARYING.contains(&k.as_str()) && !in_limits) || (subset && k == "state") {
                    continue;
                }
                if k == "id" {
                    if let (Some(wid), Some(gid)) = (wv.as_str(), gv.as_str()) {
                        if !ids.iter().any(|(d, _)| d == wid) && wid != gid {
                            ids.push((wid.to_string(), gid.to_string()));
                        }
                        let mapped = ids.iter().find(|(d, _)| d == wid).map_or(wid, |(_, r)| r);
                        if mapped != gid {
                            return Err(format!("id {gid}, not {mapped}"));
                        }
                        continue;
                    }
                }
                json_match(wv, gv, subset, in_limits || k == "limits", ids)?;
            }
            if !subset {
                if let Some(k) = g.keys().find(|k| !w.contains_key(*k)) {
                    return Err(format!("{k:?} is not shown: {got}"));
                }
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .try_for_each(|(w, g)| json_match(w, g, subset, in_limits, ids)),
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => Ok(()),
        (w, g) if w == g => Ok(()),
        (w, g) => Err(format!("{g} is not {w}")),
    }
}
