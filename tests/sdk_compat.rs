//! Compatibility with the real, unmodified PocketBase JS SDK: starts the server, creates the
//! superuser, and runs `tests/compat/sdk_compat.mjs` under node against it.
//!
//! Needs `node` and `npm` (installed with apt-get when missing and running as root). When
//! `tests/compat/node_modules` lacks what the lockfile pins, the test runs `npm ci` there
//! first (so it needs the npm registry once per fresh clone); a failing `npm ci` fails the
//! test.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_js_sdk_drives_the_server() {
    let server = common::Server::start();
    server.setup_superuser().await;
    let stdout = common::npm::run_script(
        "tests/compat/sdk_compat.mjs",
        &server.base,
        Duration::from_secs(180),
        "sdk compat: ",
    )
    .await;
    println!("{stdout}");
}
