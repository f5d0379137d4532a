//! The README's curl walk-through runs as written against a live draas, on the real
//! drasi-server and its plugins (the walk-through reads a query's results, which the stand-in
//! does not compute). Skipped, loudly, without the real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use draas_tests::{readme_block, real_server, spawn_app};

#[tokio::test]
async fn the_readme_walkthrough_runs_against_a_live_draas() {
    let Some(real) = real_server("the README walk-through") else { return };
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &real.worker_env());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &readme_block("walkthrough")])
        .env("DRAAS_URL", &app.api.base_url)
        .env("TOKEN", &app.token)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "walkthrough failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("logLevel: debug"), "YAML shows the patched level:\n{stdout}");
    assert!(stdout.contains("password: ${DB_PASSWORD}"), "env references pass through:\n{stdout}");
}
