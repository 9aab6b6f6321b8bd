use crate::common::{command, Server, StartOptions};

fn run(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    command().args(args).arg("--dir").arg(dir).output().expect("run backbone")
}

#[test]
fn version_prints_the_package_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["version"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("backbone {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn superuser_upsert_works_offline_and_through_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["superuser", "upsert", "offline@example.com", "offline-password"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let s = Server::start_in(dir.path(), StartOptions::default());
    assert!(s.setup_token.is_none(), "a superuser exists, so no setup token");
    let out = run(&["superuser", "upsert", "online@example.com", "online-password"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("running server"));
    // Both can sign in.
    for (email, password) in
        [("offline@example.com", "offline-password"), ("online@example.com", "online-password")]
    {
        let r = s
            .call(
                "POST",
                "/api/collections/_superusers/auth-with-password",
                None,
                Some(serde_json::json!({"identity": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, 200, "{email}: {}", r.text);
    }
    // Upsert of an existing email changes the password.
    let out = run(&["superuser", "upsert", "online@example.com", "changed-password"], dir.path());
    assert!(out.status.success());
    let r = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(serde_json::json!({"identity": "online@example.com", "password": "changed-password"})),
        )
        .await;
    assert_eq!(r.status, 200);
    // Invalid input is refused with the reason.
    let out = run(&["superuser", "upsert", "bad", "short"], dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("email"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_config_keys_and_variables_stop_startup_with_the_key_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("backbone.toml"), "htp = \"127.0.0.1:1\"\n").expect("write");
    let out = run(&["serve", "--http", "127.0.0.1:0"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("htp"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(dir.path().join("backbone.toml")).expect("rm");
    let out = command()
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .env("BACKBONE_NOT_A_KEY", "1")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BACKBONE_NOT_A_KEY"));
}

#[tokio::test]
async fn config_file_in_the_data_dir_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("backbone.toml"), "[limits]\nmax_body_bytes = 2048\n").expect("write");
    let s = Server::start_in(dir.path(), StartOptions::default());
    let t = s.setup_superuser().await;
    let big = serde_json::json!({"name": "x".repeat(3000)});
    s.call("POST", "/api/collections", Some(&t), Some(big)).await.assert_problem(413);
}

#[test]
fn export_openapi_prints_a_valid_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["export-openapi"], dir.path());
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(!dir.path().join("data.redb").exists(), "export-openapi does not touch the data dir");
}

#[test]
fn export_openapi_into_a_pipe_closed_early_exits_quietly() {
    use std::io::Read;
    // `backbone export-openapi | head -3`: the reader goes away after a few bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = command()
        .arg("export-openapi")
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run backbone");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("the first bytes");
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[tokio::test]
async fn check_verifies_a_stopped_data_dir_and_refuses_a_running_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), StartOptions::default());
    let t = s.setup_superuser().await;
    s.call(
        "POST",
        "/api/collections",
        Some(&t),
        Some(serde_json::json!({"name": "a", "fields": [{"name": "n", "type": "text"}], "indexes": ["CREATE UNIQUE INDEX u ON a (n)"]})),
    )
    .await;
    s.call("POST", "/api/collections/a/records", Some(&t), Some(serde_json::json!({"n": "x"}))).await;
    let busy = run(&["check"], dir.path());
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("running server"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert_eq!(s.terminate(), Some(0));
    let out = run(&["check"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 collections, 2 records"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let missing = run(&["check"], &dir.path().join("nope"));
    assert!(!missing.status.success());
}

#[tokio::test]
async fn superuser_create_update_delete_and_otp_work_offline_and_through_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let refused = |out: &std::process::Output| {
        assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // Offline.
    ok(&run(&["superuser", "create", "one@example.com", "one-password"], dir.path()));
    refused(&run(&["superuser", "create", "one@example.com", "other-password"], dir.path()));
    refused(&run(&["superuser", "update", "nobody@example.com", "other-password"], dir.path()));
    let err = refused(&run(&["superuser", "delete", "one@example.com"], dir.path()));
    assert!(err.contains("only superuser"), "{err}");
    ok(&run(&["superuser", "update", "one@example.com", "one-password-2"], dir.path()));
    let err = refused(&run(&["superuser", "otp", "one@example.com"], dir.path()));
    assert!(err.contains("disabled"), "{err}");

    // Through the running server.
    let s = Server::start_in(dir.path(), StartOptions::default());
    let sign_in = |email: &'static str, password: &'static str| {
        let s = &s;
        async move {
            s.call(
                "POST",
                "/api/collections/_superusers/auth-with-password",
                None,
                Some(serde_json::json!({"identity": email, "password": password})),
            )
            .await
        }
    };
    assert_eq!(sign_in("one@example.com", "one-password-2").await.status, 200);
    ok(&run(&["superuser", "create", "two@example.com", "two-password"], dir.path()));
    assert_eq!(sign_in("two@example.com", "two-password").await.status, 200);
    refused(&run(&["superuser", "create", "two@example.com", "two-password"], dir.path()));
    ok(&run(&["superuser", "update", "two@example.com", "two-password-2"], dir.path()));
    let token = sign_in("two@example.com", "two-password-2").await;
    assert_eq!(token.status, 200, "{}", token.text);
    let t = token.body["token"].as_str().expect("token").to_string();
    // OTP, once enabled on _superusers: the printed code signs in.
    let r = s
        .call(
            "PATCH",
            "/api/collections/_superusers",
            Some(&t),
            Some(serde_json::json!({"otp": {"enabled": true, "duration": 180, "length": 8}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let out = ok(&run(&["superuser", "otp", "one@example.com"], dir.path()));
    let value = |key: &str| {
        out.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_default().to_string()
    };
    let (otp_id, code) = (value("otpId:"), value("password:"));
    assert_eq!(code.len(), 8, "{out}");
    let r = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-otp",
            None,
            Some(serde_json::json!({"otpId": otp_id, "password": code})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["record"]["email"], "one@example.com");
    ok(&run(&["superuser", "delete", "two@example.com"], dir.path()));
    assert_eq!(sign_in("two@example.com", "two-password-2").await.status, 400);
    refused(&run(&["superuser", "delete", "one@example.com"], dir.path()));
}
