//! The session gateway on the local stack, end to end: the real `gateway` binary behind
//! the local stand-in for the load balancer, the pump serving each running task's
//! services on the task's private address, sessions started through the HTTP API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gateway::testing::{claims, now, AlbSigner};
use serde_json::{json, Value};
use session_tests::load_balancer::LOCAL_ALB_ARN;
use session_tests::pump::{self, PumpSettings};
use session_tests::{LocalGateway, Stack, StackOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn gateway_stack() -> (Arc<Stack>, tokio::task::JoinHandle<()>) {
    let stack = Arc::new(
        Stack::start_with(StackOptions {
            gateway: true,
            ..Default::default()
        })
        .await,
    );
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    (stack, pump)
}

/// Starts a session for `user` through the API and waits until the API reports it
/// running; returns its view.
async fn running_session(stack: &Stack, user: &str) -> Value {
    stack.put_user(user, true, None).await;
    let token = format!("dev:{user}");
    let (status, started, _) = stack
        .http("POST", "/sessions", Some(&token), Some(json!({})), &[])
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["session_id"].as_str().unwrap().to_owned();
    stack
        .eventually("the session to run", Duration::from_secs(60), || async {
            let (_, view, _) = stack
                .http("GET", &format!("/sessions/{id}"), Some(&token), None, &[])
                .await;
            (view["status"] == "running").then_some(view)
        })
        .await
}

fn gateway(stack: &Stack) -> &LocalGateway {
    stack.gateway.as_ref().expect("a gateway stack")
}

fn url<'a>(session: &'a Value, key: &str) -> &'a str {
    session["urls"][key].as_str().unwrap()
}

/// The host of a session URL (`http://{host}`).
fn host(url: &str) -> &str {
    url.strip_prefix("http://").unwrap().trim_end_matches('/')
}

/// Ids as identity providers give them (a bar, an at, spaces) sign in at the login
/// host and reach their session like any other.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_whose_id_has_a_bar_an_at_and_spaces_signs_in_and_reaches_the_session() {
    let (stack, pump) = gateway_stack().await;
    let user = "auth0|ada lovelace@example.com";
    let session = running_session(&stack, user).await;
    let (status, body) = gateway(&stack)
        .request(
            "GET",
            url(&session, "api"),
            Some(&format!("dev:{user}")),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["service"], "api", "{echo}");
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_reaches_each_service_and_a_websocket_echo_through_the_gateway() {
    let (stack, pump) = gateway_stack().await;
    let session = running_session(&stack, "ana").await;
    let gateway = gateway(&stack);
    for (key, port) in [("api", 8000), ("frontend", 3000), ("suv_ui", 3030)] {
        let url = url(&session, key);
        assert!(
            url.starts_with(&format!("http://{}--sess-", key.replace('_', "-"))),
            "{url}"
        );
        let (status, body) = gateway
            .request(
                "GET",
                &format!("{url}/some/page?q=1"),
                Some("dev:ana"),
                &[("cookie", "AWSELBAuthSessionCookie-0=secret; theme=dark")],
            )
            .await;
        assert_eq!(status, 200, "{key}: {body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["port"], port, "{echo}");
        assert_eq!(echo["path"], "/some/page?q=1");
        let headers = echo["headers"].as_object().unwrap();
        for name in headers.keys() {
            assert!(
                !name.starts_with("x-amzn-oidc-") && name != "authorization",
                "the session saw {name}: {echo}"
            );
        }
        let cookie = headers.get("cookie").and_then(Value::as_str).unwrap_or("");
        assert_eq!(
            cookie, "theme=dark",
            "only the user's own cookies reach the session"
        );
    }

    // A WebSocket through the load balancer and the gateway to the api service.
    let api = host(url(&session, "api"));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.load_balancer.port))
        .await
        .unwrap();
    let cookie = gateway.sign_in("dev:ana", api).await;
    let mut request = format!("ws://{api}/socket").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("the WebSocket handshake through the gateway");
    assert_eq!(response.status(), 101);
    for text in ["hello", "through the gateway"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn another_user_gets_the_same_404_as_for_a_session_that_does_not_exist() {
    let (stack, pump) = gateway_stack().await;
    let session = running_session(&stack, "ben").await;
    stack.put_user("eve", true, None).await;
    let gateway = gateway(&stack);
    let api = url(&session, "api");
    let id = session["session_id"].as_str().unwrap();

    let (status, theirs) = gateway.request("GET", api, Some("dev:eve"), &[]).await;
    assert_eq!(status, 404);
    assert!(!theirs.contains(id) && !theirs.contains("ben"), "{theirs}");
    let missing = api.replace(id, "sess-0000000000000000000000000000dead");
    let (status, nobodys) = gateway.request("GET", &missing, Some("dev:eve"), &[]).await;
    assert_eq!(status, 404);
    assert_eq!(theirs, nobodys, "nothing tells the two apart");
    // The owner still gets in.
    assert_eq!(
        gateway.request("GET", api, Some("dev:ben"), &[]).await.0,
        200
    );
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_signs_in_at_the_login_host_and_reaches_only_its_own_session_host() {
    let (stack, pump) = gateway_stack().await;
    let session = running_session(&stack, "ida").await;
    let gateway = gateway(&stack);
    let api = url(&session, "api");
    let login = format!("login.{}", gateway.domain);

    // Not signed in on the session host: sent to the login host, with the URL.
    let (status, headers, _) = gateway.exchange("GET", api, &[]).await;
    assert_eq!(status, 302);
    let location = headers["location"].to_str().unwrap().to_owned();
    let authorize = format!("http://{login}/_gateway/authorize?to=");
    assert!(location.starts_with(&authorize), "{location}");
    // The login host is where the load balancer signs in: no identity, no page.
    let (status, _, _) = gateway.exchange("GET", &location, &[]).await;
    assert_eq!(status, 401);
    // Signed in there: a page that posts a ticket to the session host.
    let (status, _, page) = gateway
        .exchange("GET", &location, &[("authorization", "Bearer dev:ida")])
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("action=\"http://{}/_gateway/ticket\"", host(api))),
        "{page}"
    );
    // The ticket's cookie opens the session's api, and only to its owner.
    let cookie = gateway.sign_in("dev:ida", host(api)).await;
    let (status, _, body) = gateway.exchange("GET", api, &[("cookie", &cookie)]).await;
    assert_eq!(status, 200, "{body}");
    let stranger = gateway.sign_in("dev:zed", host(api)).await;
    let (status, _, _) = gateway.exchange("GET", api, &[("cookie", &stranger)]).await;
    assert_eq!(status, 404);
    // The cookie is for its host: the frontend asks to sign in again.
    let frontend = url(&session, "frontend");
    let (status, _, _) = gateway
        .exchange("GET", frontend, &[("cookie", &cookie)])
        .await;
    assert_eq!(status, 302);
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_load_balancers_genuine_token_at_the_login_host_signs_in_and_nothing_else_reaches_the_session(
) {
    let (stack, pump) = gateway_stack().await;
    let session = running_session(&stack, "cy").await;
    let gateway = gateway(&stack);
    let api = url(&session, "api");
    let host = host(api);

    // Not signed in: a browser is sent to sign in (the next test follows it).
    assert_eq!(gateway.request("GET", api, None, &[]).await.0, 302);

    let exp = now() + 120;
    let signer = &gateway.signer;
    let forger = AlbSigner::generate(signer.kid());
    let tokens = [
        (
            "signed by another key under the same kid",
            forger.token(LOCAL_ALB_ARN, "cy"),
        ),
        (
            "expired",
            signer.sign(
                &signer.header(LOCAL_ALB_ARN, now() - 60),
                &claims("cy", now() - 60),
            ),
        ),
        (
            "from another load balancer",
            signer.token(
                "arn:aws:elasticloadbalancing:us-east-1:210987654321:loadbalancer/app/other/1",
                "cy",
            ),
        ),
        ("with its payload changed after signing", {
            let token = signer.sign(&signer.header(LOCAL_ALB_ARN, exp), &claims("eve", exp));
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = signer
                .sign(&signer.header(LOCAL_ALB_ARN, exp), &claims("cy", exp))
                .split('.')
                .nth(1)
                .unwrap()
                .to_owned();
            parts.join(".")
        }),
        ("not a token at all", "dev:cy".to_owned()),
    ];
    // Straight to the gateway, as only the load balancer can on AWS.
    let login_host = format!("login.{}", gateway.domain);
    let authorize = gateway::signin::login_redirect("http", &gateway.domain, host, "/");
    let authorize = &authorize[authorize.find("/_gateway/").unwrap()..];
    for (what, token) in &tokens {
        let (status, body) = gateway
            .request_to_gateway(
                "GET",
                authorize,
                &[("host", &login_host), ("x-amzn-oidc-data", token)],
            )
            .await;
        assert_eq!(status, 401, "a token {what}: {body}");
    }
    // The load balancer's genuine token gets the ticket page at the login host...
    let genuine = signer.token(LOCAL_ALB_ARN, "cy");
    let (status, page) = gateway
        .request_to_gateway(
            "GET",
            authorize,
            &[("host", &login_host), ("x-amzn-oidc-data", &genuine)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("name=\"ticket\""), "{page}");
    // ...and is no sign-in on a session host, where only the gateway's cookie is.
    let (status, _) = gateway
        .request_to_gateway(
            "GET",
            "/",
            &[("host", host), ("x-amzn-oidc-data", &genuine)],
        )
        .await;
    assert_eq!(status, 302);
    assert_eq!(
        gateway.request("GET", api, Some("dev:cy"), &[]).await.0,
        200
    );
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_sessions_urls_stop_working_within_five_seconds() {
    let (stack, pump) = gateway_stack().await;
    let session = running_session(&stack, "dee").await;
    let gateway = gateway(&stack);
    let api = url(&session, "api").to_owned();
    let id = session["session_id"].as_str().unwrap();
    assert_eq!(
        gateway.request("GET", &api, Some("dev:dee"), &[]).await.0,
        200
    );

    let (status, _, _) = stack
        .http(
            "DELETE",
            &format!("/sessions/{id}"),
            Some("dev:dee"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202);
    let asked = Instant::now();
    let refused_after = stack
        .eventually(
            "the URL to stop working",
            Duration::from_secs(30),
            || async {
                let (status, _) = gateway.request("GET", &api, Some("dev:dee"), &[]).await;
                (status == 404).then(|| asked.elapsed())
            },
        )
        .await;
    assert!(
        refused_after < Duration::from_secs(5),
        "the URL still worked {refused_after:?} after the stop"
    );
    println!("the URL stopped working {refused_after:?} after the stop was asked");
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_the_gateway_keeps_serving() {
    let (stack, pump) = gateway_stack().await;
    let session = running_session(&stack, "flo").await;
    stack.put_user("gus", true, None).await;
    let gateway = gateway(&stack);
    let api = url(&session, "api");
    let host = host(api);
    let token = gateway.signer.token(LOCAL_ALB_ARN, "flo");
    let identity = ("x-amzn-oidc-data", token.as_str());
    let big = "x".repeat(100 * 1024);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "oversized headers",
            "/",
            vec![("host", host), identity, ("x-big", &big)],
        ),
        ("no host", "/", vec![identity]),
        (
            "a host outside the domain",
            "/",
            vec![("host", "api--x.example.com"), identity],
        ),
        (
            "a malformed host",
            "/",
            vec![("host", "api--sess-1.localhost:notaport"), identity],
        ),
        (
            "a path climbing out",
            "/a/../../etc/passwd",
            vec![("host", host), identity],
        ),
        (
            "an encoded climb",
            "/a/%2e%2e/%2E%2E/etc",
            vec![("host", host), identity],
        ),
        (
            "an encoded slash",
            "/a%2f..%2fb",
            vec![("host", host), identity],
        ),
    ];
    for (what, path, headers) in &cases {
        let (status, body) = gateway.request_to_gateway("GET", path, headers).await;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
    }
    // Another user's session through the load balancer: the plain 404.
    assert_eq!(
        gateway.request("GET", api, Some("dev:gus"), &[]).await.0,
        404
    );

    // Conflicting framing, as raw bytes: refused before anything is forwarded.
    let smuggle = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nx-amzn-oidc-data: {token}\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    let answer = raw(gateway.address, smuggle.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("/smuggled"), "{answer}");

    // And it still serves its owner.
    assert_eq!(
        gateway.request("GET", api, Some("dev:flo"), &[]).await.0,
        200
    );
    pump.abort();
}

async fn raw(to: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(to).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}
