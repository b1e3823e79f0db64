//! The web console in a real browser, end to end: Debian's headless Chromium driven
//! over WebDriver (`chromedriver`, from tools/install-browser.sh) by fantoccini, on the
//! local stack with the session gateway. A person's steps: sign in at the login host
//! (the local load balancer's stand-in for the provider's page), start a session and
//! watch it come up, open its `api`, stop it. Each state the page shows is checked
//! with axe-core (pinned in tools/browser) and the running and refused states are
//! saved as screenshots under the target directory (and the running one on a phone).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use session_core::session::{Reason, SessionId, Status};
use session_tests::pump::{self, PumpSettings};
use session_tests::{Stack, StackOptions, Tools};

/// Each browser's profile directory's number.
static PROFILES: AtomicUsize = AtomicUsize::new(0);

/// How long the page may take to show what the stack did.
const PAGE_WAIT: Duration = Duration::from_secs(60);

/// One chromedriver with its browsers (one WebDriver session each: each its own
/// profile, so its own cookies).
struct Driver {
    process: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (tools/install-browser.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            process,
            url,
            profiles: tempfile::tempdir().expect("a profiles directory"),
        }
    }

    /// A new browser window (a phone-width one with `phone`).
    async fn browser(&self, phone: bool) -> Client {
        let size = if phone { "390,844" } else { "1280,900" };
        let profile = self
            .profiles
            .path()
            .join(PROFILES.fetch_add(1, Ordering::Relaxed).to_string());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    // Root in a container has no user namespaces for the sandbox.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--window-size={size}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn console_stack(
    env: Vec<(&'static str, String)>,
) -> (Arc<Stack>, tokio::task::JoinHandle<()>) {
    let stack = Arc::new(
        Stack::start_with(StackOptions {
            gateway: true,
            env,
            ..Default::default()
        })
        .await,
    );
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    (stack, pump)
}

fn login_url(stack: &Stack) -> String {
    let gateway = stack.gateway.as_ref().expect("a gateway stack");
    format!("http://login.{}/", gateway.domain)
}

/// Signs `user` in as a person does: the console's address, the provider's page (the
/// local stand-in), the user name, back on the console.
async fn sign_in(browser: &Client, stack: &Stack, user: &str) {
    browser.goto(&login_url(stack)).await.unwrap();
    let name = browser
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css("input[name=user]"))
        .await
        .expect("the sign-in form");
    name.send_keys(user).await.unwrap();
    click(browser, Locator::Css("button[type=submit]")).await;
    wait_for_text(browser, "#user", user).await;
}

/// Clicks the element `target` once it is on the page. The list is redrawn as
/// sessions change (each second while one is watched), so an element found just
/// before a redraw is found again.
async fn click(browser: &Client, target: Locator<'_>) {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let clicked = match browser.find(target).await {
            Ok(element) => element.click().await.map(drop),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{target:?} cannot be clicked: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until the element of `css` shows `text` (its visible text contains it).
async fn wait_for_text(browser: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + PAGE_WAIT;
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            seen = element.text().await.unwrap_or_default();
            if seen.contains(text) {
                return seen;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} never showed {text:?}; it shows {seen:?}");
}

/// The session ids the page lists (read in one script: the list may be redrawn
/// between two WebDriver calls).
async fn listed_sessions(browser: &Client) -> Vec<String> {
    let ids = browser
        .execute(
            "return [...document.querySelectorAll('#sessions tbody tr')]\
               .map(row => row.id.replace(/^session-/, ''));",
            vec![],
        )
        .await
        .expect("the list is read");
    serde_json::from_value(ids).expect("ids")
}

/// axe-core's violations of the WCAG 2.1 A and AA rules on the page as it is now,
/// as `(rule, impact, help)`.
async fn accessibility_violations(browser: &Client) -> Vec<(String, String, String)> {
    let axe = Tools::from_env()
        .dir
        .join("browser/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&axe)
        .unwrap_or_else(|e| panic!("{} (tools/install-browser.sh): {e}", axe.display()));
    browser
        .execute(&source, vec![])
        .await
        .expect("axe-core loads");
    let found = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document, {runOnly: {type: 'tag', values: \
               ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})\
               .then(r => done(r.violations.map(v => [v.id, v.impact || '', \
                 v.help + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')])))\
               .catch(e => done([['axe-error', 'critical', String(e)]]));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    serde_json::from_value(found).expect("violations as triples")
}

/// Fails on any serious or critical violation; prints the rest.
async fn assert_accessible(browser: &Client, state: &str) {
    let violations = accessibility_violations(browser).await;
    for (rule, impact, help) in &violations {
        println!("axe ({state}): {impact} {rule}: {help}");
    }
    let serious: Vec<_> = violations
        .iter()
        .filter(|(_, impact, _)| impact == "serious" || impact == "critical")
        .collect();
    assert!(
        serious.is_empty(),
        "serious accessibility violations on the {state} page: {serious:#?}"
    );
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
}

/// A fetch the page's own script could make, from the page: `(status, body)`.
async fn page_fetch(browser: &Client, method: &str, path: &str) -> (u16, Value) {
    let answer = browser
        .execute_async(
            "const [method, path, done] = arguments;\
             fetch(path, {method, headers: {'X-Console': '1'}})\
               .then(async r => done([r.status, await r.json().catch(() => null)]))\
               .catch(e => done([0, String(e)]));",
            vec![json!(method), json!(path)],
        )
        .await
        .expect("the fetch runs");
    serde_json::from_value(answer).expect("status and body")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_signs_in_starts_watches_opens_and_stops_a_session_and_others_never_see_it() {
    let (stack, pump) = console_stack(vec![]).await;
    stack.put_user("ana", true, Some(1)).await;
    stack.put_user("bo", true, None).await;
    let driver = Driver::start();
    let ana = driver.browser(false).await;
    sign_in(&ana, &stack, "ana").await;
    wait_for_text(&ana, "#sessions-empty", "no sessions").await;
    // The versions route fills the picker: the provisioned images' one version.
    wait_for_text(&ana, "#version", "1.0.0 (latest)").await;
    assert_accessible(&ana, "empty").await;

    // Start, and watch it come up.
    click(&ana, Locator::Id("start-button")).await;
    let progress = wait_for_text(&ana, "#progress", "Running").await;
    assert!(
        progress.contains("after"),
        "each status with its time: {progress}"
    );
    let ids = listed_sessions(&ana).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    let row = format!("#session-{id}");
    wait_for_text(&ana, &row, "Running").await;
    let session_id = SessionId::parse(&id).unwrap();
    let session = stack.session(&session_id).await.unwrap();
    assert_eq!(session.status, Status::Running);
    assert_eq!(session.user_id, "ana");
    screenshot(&ana, "running").await;
    assert_accessible(&ana, "running").await;

    // At the limit, a second start is refused with the active session listed.
    click(&ana, Locator::Id("start-button")).await;
    let refusal = wait_for_text(&ana, "#refusal", "as many sessions as you may run").await;
    assert!(
        refusal.contains(&id),
        "the active session is listed: {refusal}"
    );
    screenshot(&ana, "refused").await;
    assert_accessible(&ana, "refused").await;
    assert_eq!(listed_sessions(&ana).await, vec![id.clone()]);

    // The `api` link opens the session's api through the gateway (signing in there).
    let console_window = ana.window().await.unwrap();
    click(
        &ana,
        Locator::Css(&format!("{row} a[data-key='open-api-{id}']")),
    )
    .await;
    let deadline = Instant::now() + PAGE_WAIT;
    let api_window = loop {
        let windows = ana.windows().await.unwrap();
        if let Some(window) = windows.into_iter().find(|w| *w != console_window) {
            break window;
        }
        assert!(Instant::now() < deadline, "the api link opened no window");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ana.switch_to_window(api_window).await.unwrap();
    let answer = wait_for_text(&ana, "body", "\"service\":\"api\"").await;
    assert!(answer.contains("\"port\":8000"), "{answer}");
    let url = ana.current_url().await.unwrap();
    assert!(url.host_str().unwrap().starts_with("api--"), "{url}");
    ana.close_window().await.unwrap();
    ana.switch_to_window(console_window).await.unwrap();

    // Another user signs in: their page never shows it, their script cannot read it.
    let bo = driver.browser(true).await;
    sign_in(&bo, &stack, "bo").await;
    wait_for_text(&bo, "#sessions-empty", "no sessions").await;
    assert!(listed_sessions(&bo).await.is_empty());
    assert!(!bo.source().await.unwrap().contains(&id));
    let (status, body) = page_fetch(&bo, "GET", &format!("/_gateway/api/sessions/{id}")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = page_fetch(&bo, "DELETE", &format!("/_gateway/api/sessions/{id}")).await;
    assert_eq!(status, 404, "{body}");
    bo.close().await.unwrap();

    // Stop, and see it stopped.
    click(&ana, Locator::Css(&format!("{row} [data-key='stop-{id}']"))).await;
    wait_for_text(&ana, &row, "Stopped (stopped by you)").await;
    assert_accessible(&ana, "stopped").await;
    let session = stack.session(&session_id).await.unwrap();
    assert_eq!(session.status, Status::Stopped);
    assert_eq!(session.stop_reason, Some(Reason::User));
    assert!(stack.running_tasks().await.is_empty());
    ana.close().await.unwrap();
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_page_keeps_its_session_from_the_idle_stop_and_closing_it_lets_the_stop_come() {
    // Every heartbeat written, so that a 10 s idle timeout is a valid one.
    let (stack, pump) = console_stack(vec![("HEARTBEAT_INTERVAL_S", "0".into())]).await;
    stack.put_user("ivy", true, None).await;
    stack
        .set_user("ivy", "idle_timeout_s", AttributeValue::N("10".into()))
        .await;
    let (status, started, _) = stack
        .http("POST", "/sessions", Some("dev:ivy"), Some(json!({})), &[])
        .await;
    assert_eq!(status, 202, "{started}");
    let id = SessionId::parse(started["session_id"].as_str().unwrap()).unwrap();
    stack
        .eventually("the session to run", PAGE_WAIT, || async {
            let session = stack.session(&id).await?;
            (session.status == Status::Running).then_some(())
        })
        .await;

    let driver = Driver::start();
    // On a phone's screen: each session a card, nothing wider than the screen.
    let ivy = driver.browser(true).await;
    sign_in(&ivy, &stack, "ivy").await;
    let row = format!("#session-{id}");
    let shown = wait_for_text(&ivy, &row, "Stops as idle at").await;
    println!("the page shows: {shown}");
    let widths = ivy
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (page, screen): (u64, u64) = serde_json::from_value(widths).unwrap();
    assert!(
        page <= screen,
        "the page is {page} px wide on a {screen} px screen"
    );
    screenshot(&ivy, "phone-running").await;
    assert_accessible(&ivy, "phone, running").await;
    // Longer than the idle timeout with the page open and visible: its heartbeats
    // keep the session.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let report = stack.reap().await;
    assert_eq!(report["idle"], json!([]), "{report}");
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Running);
    // What kept it: the page's heartbeats, the last one written within the timeout.
    let beat = session
        .last_activity_at
        .expect("the page's heartbeats were written");
    let since = chrono::Utc::now().signed_duration_since(beat.at());
    assert!(
        since < chrono::TimeDelta::seconds(10),
        "last beat {since} ago"
    );

    // The page closed: nothing beats, and the next reaper run after the timeout stops
    // it as idle.
    ivy.close().await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let report = stack.reap().await;
    assert_eq!(report["idle"], json!([id.to_string()]), "{report}");
    let session = stack
        .eventually("the idle stop", PAGE_WAIT, || async {
            let session = stack.session(&id).await?;
            (session.status == Status::Stopped).then_some(session)
        })
        .await;
    assert_eq!(session.stop_reason, Some(Reason::Idle));
    pump.abort();
}
