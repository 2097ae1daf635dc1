//! The web UI in a real browser: headless Chromium loads the page from a running pipewarden, its
//! scripts call the JSON API, and the rendered DOM shows the stage that was sent over OTLP and
//! the synthetic probe that checks a local HTTP server.

use std::process::Command;

use crate::harness::{DEADLINE, Pipewarden, eventually, otlp};

/// Chromium from the Debian package (installed by tests/install.sh).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Renders `url` in headless Chromium and returns the DOM after its scripts ran.
pub(crate) fn rendered_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Lets the page's fetches finish before the DOM is printed.
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap_or_else(|err| panic!("cannot start {CHROMIUM} (run tests/install.sh): {err}"));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn ui_renders_stages_from_the_api_in_chromium() {
    let pipewarden =
        Pipewarden::start_with_env(&[("PIPEWARDEN_COLLECTOR__SIGNALS__WINDOW", "200ms")]).await;
    let body = otlp::encode(&otlp::logs_request("ui-check", "render", 7));
    let answer = otlp::post(
        &otlp::http_client(),
        &pipewarden.http_endpoint(),
        "/v1/logs",
        "application/x-protobuf",
        None,
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    eventually("stage stored", DEADLINE, || async {
        match pipewarden.stage_totals("ui-check/render").await? {
            totals if totals.log_records == 7 => Ok(()),
            totals => Err(format!("{totals:?}")),
        }
    })
    .await;
    // The stage's derived series, listed with their kind.
    let listed = eventually("a series stored", DEADLINE, || async {
        let (_, body) = pipewarden.try_get_json("/api/v1/series").await?;
        match body["series"].as_array() {
            Some(series) if !series.is_empty() => Ok(series[0].clone()),
            _ => Err(format!("{body}")),
        }
    })
    .await;

    let url = pipewarden.web_url("/");
    let dom = tokio::task::spawn_blocking(move || rendered_dom(&url))
        .await
        .unwrap();
    assert!(dom.contains("<title>pipewarden</title>"), "{dom}");
    let series_row = format!(
        "<td>{}</td><td>{}</td>",
        listed["key"].as_str().unwrap(),
        listed["kind"].as_str().unwrap()
    );
    assert!(dom.contains(&series_row), "{series_row} missing:\n{dom}");
    // Rendered by the page's script from /api/v1/stages and /readyz, not present in the HTML.
    assert!(
        dom.contains("<td>ui-check/render</td>"),
        "stage row missing from the rendered DOM:\n{dom}"
    );
    assert!(dom.contains(">ready<"), "readiness not rendered:\n{dom}");
}

#[tokio::test]
async fn ui_lists_a_synthetic_http_probe_with_its_status_and_readyz_reports_the_prober() {
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(|| async { "service healthy" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let config = format!(
        "[[synthetic.probes]]\nname = \"ui-web\"\ninterval = \"300ms\"\n\
         [synthetic.probes.http_check]\nurl = \"http://{addr}/health\"\n\
         body_matches = \"healthy\"\n"
    );
    let pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    eventually("probe result stored", DEADLINE, || async {
        let (status, body) = pipewarden.try_get_json("/api/v1/probes").await?;
        match body["probes"][0]["last"]["status"].as_str() {
            Some("up") if status == 200 => Ok(()),
            _ => Err(format!("{status} {body}")),
        }
    })
    .await;
    let ready = pipewarden.get_json("/readyz").await;
    assert_eq!(ready["components"]["probes"], "ready", "{ready}");

    let url = pipewarden.web_url("/");
    let dom = tokio::task::spawn_blocking(move || rendered_dom(&url))
        .await
        .unwrap();
    // Rendered by the page's script from /api/v1/probes.
    assert!(
        dom.contains(r#"<tr data-probe="ui-web" data-status="up"><td>ui-web</td>"#),
        "probe row missing from the rendered DOM:\n{dom}"
    );
    assert!(
        dom.contains(r#"<td colspan="5" class="muted">none</td>"#),
        "dead-man findings not rendered:\n{dom}"
    );
    server.abort();
}
