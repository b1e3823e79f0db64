//! The gateway end to end on real sockets: identity, authorization, forwarding,
//! WebSockets, limits and refusals.

mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::testing::{claims, now, AlbSigner};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, StatusCode};
use session_core::hosts::session_host;
use session_core::session::SessionId;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_owner_reaches_each_service_with_its_request_passed_and_credentials_stripped() {
    let h = Harness::start().await;
    for service in SERVICES {
        let request = Request::post("/echo/path?q=1&r=%20x")
            .header("host", h.host(service))
            .header("cookie", h.cookie(OWNER, service))
            // A token on a session host is a client's: ignored, and never forwarded.
            .header("x-amzn-oidc-data", h.token(OWNER))
            .header("x-amzn-oidc-accesstoken", "access-token")
            .header("x-amzn-oidc-identity", OWNER)
            .header(
                "cookie",
                "AWSELBAuthSessionCookie-0=alb0; app=1; AWSELBAuthSessionCookie-1=alb1",
            )
            .header("x-custom", "kept")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "dropped")
            .header("keep-alive", "timeout=10")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .body(Full::new(Bytes::from_static(b"hello body")))
            .unwrap();
        let answer = send(h.addr(), request).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{service}: {}",
            answer.text()
        );
        let echo = answer.json();
        assert_eq!(echo["service"], service);
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["target"], "/echo/path?q=1&r=%20x");
        assert_eq!(echo["body"], "hello body");
        assert_eq!(echoed(&echo, "x-custom"), ["kept"]);
        assert_eq!(echoed(&echo, "host"), [h.host(service)]);
        assert_eq!(echoed(&echo, "x-forwarded-host"), [h.host(service)]);
        assert_eq!(echoed(&echo, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
        assert_eq!(echoed(&echo, "x-forwarded-proto"), ["https"]);
        assert_eq!(echoed(&echo, "cookie"), ["app=1"]);
        assert_eq!(echoed(&echo, "content-length"), ["10"]);
        for gone in [
            "x-amzn-oidc-data",
            "x-amzn-oidc-accesstoken",
            "x-amzn-oidc-identity",
            "x-hop",
            "keep-alive",
            "te",
            "proxy-authorization",
        ] {
            assert!(echoed(&echo, gone).is_empty(), "{gone} reached the session");
        }
        assert!(!answer.text().contains("alb0") && !answer.text().contains("alb1"));
        assert_eq!(answer.headers["x-service"], service);
        for gone in ["x-upstream-hop", "keep-alive", "proxy-authenticate"] {
            assert!(
                !answer.headers.contains_key(gone),
                "{gone} reached the client"
            );
        }
    }
}

#[tokio::test]
async fn a_websocket_echo_works_through_the_gateway() {
    let h = Harness::start().await;
    let stream = TcpStream::connect(h.addr()).await.unwrap();
    let mut request = format!("ws://{}/ws", h.host("suv_ui"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", h.cookie(OWNER, "suv_ui").parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through the gateway"] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_websocket_to_someone_elses_session_is_refused_and_closed() {
    let h = Harness::start().await;
    let stream = TcpStream::connect(h.addr()).await.unwrap();
    let mut request = format!("ws://{}/ws", h.host("api"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", h.cookie("intruder", "api").parse().unwrap());
    let err = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            assert_eq!(response.headers()["connection"], "close");
        }
        other => panic!("{other}"),
    }
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn another_users_session_gets_the_same_404_as_a_session_that_does_not_exist() {
    let h = Harness::start().await;
    let someone_elses = h.get("api", "/", Some("intruder")).await;
    let missing = {
        let host = session_host("api", &SessionId::generate(), DOMAIN);
        let request = Request::get("/")
            .header("cookie", h.cookie_on("intruder", &host))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(h.addr(), request).await
    };
    let no_such_service = h.get("db", "/", Some(OWNER)).await;
    for answer in [&someone_elses, &missing, &no_such_service] {
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.body, someone_elses.body);
        assert_eq!(answer.text(), "not found\n");
        let mut headers = answer.headers.clone();
        headers.remove("date");
        let mut reference = someone_elses.headers.clone();
        reference.remove("date");
        assert_eq!(headers, reference);
    }
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn a_session_that_is_not_running_gets_the_same_404() {
    let h = Harness::start().await;
    for status in ["starting", "provisioning", "stopping", "stopped", "failed"] {
        let session = SessionId::generate();
        h.sessions
            .insert(session.clone(), h.upstream.route(OWNER, status));
        let request = Request::get("/")
            .header("host", session_host("api", &session, DOMAIN))
            .header(
                "cookie",
                h.cookie_on(OWNER, &session_host("api", &session, DOMAIN)),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = send(h.addr(), request).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{status}");
        assert_eq!(answer.text(), "not found\n");
    }
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn a_browser_without_sign_in_is_sent_to_the_login_host_and_a_script_asked_to_sign_in() {
    let h = Harness::start().await;
    let answer = h.get("api", "/notebooks?x=1", None).await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
    let to = format!("https://{}/notebooks?x=1", h.host("api"));
    let expected = format!(
        "https://login.{DOMAIN}/_gateway/authorize?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("to", &to)
            .finish()
    );
    assert_eq!(answer.headers["location"], expected.as_str());
    assert_eq!(answer.headers["cache-control"], "no-store");
    for method in ["POST", "PUT", "DELETE"] {
        let request = Request::builder()
            .method(method)
            .uri("/")
            .header("host", h.host("api"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = send(h.addr(), request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(answer.text(), "sign-in required\n");
    }
    assert_eq!(h.upstream.reached(), (0, 0));
}

/// A request to a session host as a browser signed in there sends it.
fn with_cookie(h: &Harness, url_key: &str, path: &str, cookie: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", h.host(url_key))
        .header("cookie", format!("theme=dark; {cookie}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn the_owner_signed_in_at_the_login_host_reaches_the_session_with_the_gateways_cookie_only() {
    let h = Harness::start().await;
    let cookie = h.sign_in(OWNER, &h.host("api")).await;
    assert!(cookie.starts_with("__Host-session-gateway="), "{cookie}");
    let answer = send(h.addr(), with_cookie(&h, "api", "/data?q=1", &cookie)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = answer.json();
    assert_eq!(seen["service"], "api");
    assert_eq!(seen["target"], "/data?q=1");
    // The session's code sees the user's other cookies, never the sign-in.
    assert_eq!(echoed(&seen, "cookie"), vec!["theme=dark"], "{seen}");

    // The cookie is for its host only: another service of the same session signs in
    // on its own.
    let frontend = send(h.addr(), with_cookie(&h, "frontend", "/", &cookie)).await;
    assert_eq!(frontend.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_stranger_signed_in_on_a_session_host_gets_the_same_404_as_for_no_session() {
    let h = Harness::start().await;
    // The login host mints a ticket for any session host: the session host decides.
    let cookie = h.sign_in("intruder", &h.host("api")).await;
    let answer = send(h.addr(), with_cookie(&h, "api", "/", &cookie)).await;
    let missing = session_host("api", &SessionId::generate(), DOMAIN);
    let no_session = send(
        h.addr(),
        Request::get("/")
            .header("cookie", h.cookie_on("intruder", &missing))
            .header("host", missing)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, no_session.body);
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn a_forged_expired_or_foreign_ticket_signs_no_one_in() {
    let h = Harness::start().await;
    let host = h.host("api");
    let session_host = session_core::hosts::parse_host(&host, DOMAIN).unwrap();
    let minter = |key: &[u8]| {
        gateway::signin::SignIn::new(
            gateway::signin::SignInKey::new(key.to_vec()).unwrap(),
            Duration::from_secs(3600),
        )
    };
    let ours = minter(SIGN_IN_KEY);
    let login_origin = format!("https://login.{DOMAIN}");
    let redeem = |ticket: String, origin: Option<String>| {
        let mut request = Request::post(gateway::signin::TICKET_PATH)
            .header("host", host.clone())
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request
            .body(Full::new(Bytes::from(format!("ticket={ticket}&to=%2F"))))
            .unwrap()
    };
    let other_service = session_core::hosts::parse_host(&h.host("frontend"), DOMAIN).unwrap();
    for (ticket, why) in [
        (
            minter(b"a key the gateway does not hold!").ticket(OWNER, &session_host, now()),
            "another key",
        ),
        (ours.ticket(OWNER, &session_host, now() - 61), "expired"),
        (ours.ticket(OWNER, &other_service, now()), "another host"),
        ("1.b3duZXItMQ.AAAA".to_owned(), "forged"),
    ] {
        let answer = send(h.addr(), redeem(ticket, Some(login_origin.clone()))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{why}");
        assert!(!answer.headers.contains_key("set-cookie"), "{why}");
    }
    // A valid ticket posted by any page but the login host's is refused: no one can
    // sign a user in to a session of theirs (login CSRF).
    let valid = ours.ticket(OWNER, &session_host, now());
    for origin in [
        format!("https://{}", h.host("frontend")),
        "https://evil.example".to_owned(),
        "null".to_owned(),
    ] {
        let answer = send(h.addr(), redeem(valid.clone(), Some(origin.clone()))).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(!answer.headers.contains_key("set-cookie"), "{origin}");
    }
    let answer = send(h.addr(), redeem(valid, Some(login_origin))).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers["location"], "/");
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn a_page_of_another_session_cannot_act_in_this_one_with_the_users_cookie() {
    let h = Harness::start().await;
    let cookie = h.sign_in(OWNER, &h.host("api")).await;
    let from = |origin: &str| {
        Request::post("/delete-everything")
            .header("host", h.host("api"))
            .header("cookie", cookie.clone())
            .header("origin", origin)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let other_session = session_host("frontend", &SessionId::generate(), DOMAIN);
    for origin in [
        format!("https://{other_session}"),
        "https://evil.example".to_owned(),
        format!("http://{}", h.host("frontend")),
        "null".to_owned(),
    ] {
        let answer = send(h.addr(), from(&origin)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(answer.text(), "forbidden\n");
    }
    assert_eq!(h.upstream.reached(), (0, 0));
    // The session's own frontend calling its api is the session's own business.
    let answer = send(h.addr(), from(&format!("https://{}", h.host("frontend")))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn the_login_host_answers_only_its_authorize_page_to_signed_in_users_for_our_hosts() {
    let h = Harness::start().await;
    let login = |path: &str, user: Option<&str>| {
        let mut request = Request::get(path).header("host", format!("login.{DOMAIN}"));
        if let Some(user) = user {
            request = request.header("x-amzn-oidc-data", h.token(user));
        }
        request.body(Full::new(Bytes::new())).unwrap()
    };
    let to = |url: &str| {
        format!(
            "/_gateway/authorize?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("to", url)
                .finish()
        )
    };
    let ours = to(&format!("https://{}/x", h.host("api")));
    let page = send(h.addr(), login(&ours, Some(OWNER))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["referrer-policy"], "strict-origin");
    assert_eq!(page.headers["cache-control"], "no-store");
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains(&format!("form-action https://{};", h.host("api"))),
        "{policy}"
    );
    assert!(page.text().contains(&format!(
        "action=\"https://{}/_gateway/ticket\"",
        h.host("api")
    )));

    let unsigned = send(h.addr(), login(&ours, None)).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    for url in [
        "https://evil.example/".to_owned(),
        format!("http://{}/", h.host("api")),
        format!("https://{}.evil.example/", h.host("api")),
    ] {
        let answer = send(h.addr(), login(&to(&url), Some(OWNER))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(!answer.text().contains("ticket"), "{url}");
    }
    let elsewhere = send(h.addr(), login("/elsewhere", Some(OWNER))).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn the_login_host_serves_the_console_and_who_is_signed_in_to_signed_in_users_only() {
    let h = Harness::start().await;
    let login = |method: &str, path: &str, user: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("login.{DOMAIN}"));
        if let Some(user) = user {
            request = request.header("x-amzn-oidc-data", h.token(user));
        }
        request.body(Full::new(Bytes::new())).unwrap()
    };
    let page = send(h.addr(), login("GET", "/", Some(OWNER))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-store");
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert!(page.text().contains("/_console/console.js"));
    for (path, kind) in [
        ("/_console/console.js", "text/javascript; charset=utf-8"),
        ("/_console/console.css", "text/css; charset=utf-8"),
    ] {
        let file = send(h.addr(), login("GET", path, Some(OWNER))).await;
        assert_eq!(file.status, StatusCode::OK, "{path}");
        assert_eq!(file.headers["content-type"], kind, "{path}");
    }
    let me = send(h.addr(), login("GET", "/_gateway/whoami", Some(OWNER))).await;
    assert_eq!(me.status, StatusCode::OK);
    let me: serde_json::Value = serde_json::from_str(&me.text()).unwrap();
    assert_eq!(me["user_id"], OWNER);

    // Not signed in, or not a read: none of it.
    for (method, path, user) in [
        ("GET", "/", None),
        ("GET", "/_console/console.js", None),
        ("GET", "/_gateway/whoami", None),
    ] {
        let answer = send(h.addr(), login(method, path, user)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    for path in ["/", "/_gateway/whoami"] {
        let answer = send(h.addr(), login("POST", path, Some(OWNER))).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn at_the_login_host_forged_expired_wrong_signer_wrong_alg_or_unknown_key_tokens_are_refused()
{
    let h = Harness::start().await;
    let exp = now() + 60;
    let forger = AlbSigner::generate(h.signer.kid());
    let unknown = AlbSigner::generate("unknown-kid");
    let mut wrong_alg = h.signer.header(ALB_ARN, exp);
    wrong_alg["alg"] = "HS256".into();
    let mut none_alg = h.signer.header(ALB_ARN, exp);
    none_alg["alg"] = "none".into();
    let mut bad_kid = h.signer.header(ALB_ARN, exp);
    bad_kid["kid"] = "../../evil".into();
    let valid = h.token(OWNER);
    let mut tampered: Vec<&str> = valid.split('.').collect();
    let other_claims = base64_url(&claims("intruder", exp).to_string());
    tampered[1] = &other_claims;
    let tokens = [
        ("forged signature", forger.token(ALB_ARN, OWNER)),
        ("tampered payload", tampered.join(".")),
        (
            "expired",
            h.signer
                .sign(&h.signer.header(ALB_ARN, exp), &claims(OWNER, now() - 60)),
        ),
        (
            "expired header",
            h.signer
                .sign(&h.signer.header(ALB_ARN, now() - 60), &claims(OWNER, exp)),
        ),
        (
            "wrong signer",
            h.signer.token(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/other/1",
                OWNER,
            ),
        ),
        ("wrong alg", h.signer.sign(&wrong_alg, &claims(OWNER, exp))),
        ("alg none", h.signer.sign(&none_alg, &claims(OWNER, exp))),
        ("unknown kid", unknown.token(ALB_ARN, OWNER)),
        ("bad kid", h.signer.sign(&bad_kid, &claims(OWNER, exp))),
        (
            "no subject",
            h.signer.sign(
                &h.signer.header(ALB_ARN, exp),
                &serde_json::json!({"exp": exp}),
            ),
        ),
        ("not a token", "not-a-token".into()),
        ("bad base64", "a.b.c!".into()),
        ("two segments", valid.rsplit_once('.').unwrap().0.to_owned()),
    ];
    for (what, token) in tokens {
        let answer = send(h.addr(), h.authorize(Some(&token))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(answer.text(), "sign-in required\n", "{what}");
        // On a session host a token is no sign-in at all, valid or not.
        let on_session_host = Request::get("/")
            .header("host", h.host("api"))
            .header("x-amzn-oidc-data", token)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(
            send(h.addr(), on_session_host).await.status,
            StatusCode::FOUND,
            "{what}"
        );
    }
    let valid_on_session_host = Request::get("/")
        .header("host", h.host("api"))
        .header("x-amzn-oidc-data", valid.clone())
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        send(h.addr(), valid_on_session_host).await.status,
        StatusCode::FOUND
    );
    assert_eq!(h.upstream.reached(), (0, 0));
    let page = send(h.addr(), h.authorize(Some(&valid))).await;
    assert_eq!(page.status, StatusCode::OK);
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(text)
}

#[tokio::test]
async fn a_forged_key_id_is_fetched_once_and_a_real_one_once_for_many_requests() {
    let h = Harness::start().await;
    let unknown = AlbSigner::generate("forged-kid");
    let token = h.token(OWNER);
    let mut requests = Vec::new();
    for _ in 0..20 {
        requests.push(send(h.addr(), h.authorize(Some(&token))));
    }
    for answer in futures_util::future::join_all(requests).await {
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(h.keys.hits(h.signer.kid()), 1);
    for _ in 0..10 {
        let request = h.authorize(Some(&unknown.token(ALB_ARN, OWNER)));
        assert_eq!(
            send(h.addr(), request).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(h.keys.hits("forged-kid"), 1);
}

#[tokio::test]
async fn a_stopped_session_loses_access_within_the_cache_ttl() {
    let h = Harness::start().await;
    assert_eq!(h.get("api", "/", Some(OWNER)).await.status, StatusCode::OK);
    h.sessions.set_status(&h.session, "stopping");
    let stopped_at = Instant::now();
    loop {
        let answer = h.get("api", "/", Some(OWNER)).await;
        if answer.status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            stopped_at.elapsed() < Duration::from_millis(200 + 500),
            "still reachable {:?} after it stopped",
            stopped_at.elapsed()
        );
    }
}

#[tokio::test]
async fn malformed_or_ambiguous_requests_are_refused_never_forwarded_and_the_gateway_keeps_serving()
{
    let h = Harness::start().await;
    let host = h.host("api");
    let token = h.cookie(OWNER, "api");
    let big = "a".repeat(100 * 1024);
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "CL then TE",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
            400,
        ),
        (
            "TE then CL",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG"),
            400,
        ),
        (
            "TE then CL, smuggling a request",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n"),
            400,
        ),
        (
            "two equal Content-Length",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            400,
        ),
        (
            "two different Content-Length",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            400,
        ),
        (
            "Transfer-Encoding not chunked",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400,
        ),
        (
            "Transfer-Encoding gzip, chunked",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "two Transfer-Encoding",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        ("dot-dot path", format!("GET /a/../../etc/passwd HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("encoded dot-dot path", format!("GET /a/%2e%2E/secret HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("dot path", format!("GET /./x HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("encoded slash", format!("GET /a%2f..%2fb HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("encoded backslash", format!("GET /a%5c..%5cb HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("absolute-form target", format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("authority-form target", format!("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("asterisk-form target", format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("missing Host", format!("GET / HTTP/1.1\r\nCookie: {token}\r\n\r\n"), 400),
        ("two Hosts", format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("Host of another domain", format!("GET / HTTP/1.1\r\nHost: api--{}.evil.test\r\nCookie: {token}\r\n\r\n", h.session), 400),
        ("Host with an extra label", format!("GET / HTTP/1.1\r\nHost: x.{host}\r\nCookie: {token}\r\n\r\n"), 400),
        ("Host that is an IP", format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {token}\r\n\r\n"), 400),
        ("HTTP/1.0 with chunked", format!("POST / HTTP/1.0\r\nHost: {host}\r\nCookie: {token}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("100 KB header", format!("GET / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nx-big: {big}\r\n\r\n"), 431),
        ("not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\r\n\r\n".to_owned(), 400),
    ];
    for (what, request, expected) in cases {
        let answer = raw(h.addr(), request.as_bytes()).await;
        // `raw` returns once the gateway has closed the connection.
        assert_eq!(status_of(&answer), expected, "{what}: {answer}");
        assert_eq!(h.upstream.reached(), (0, 0), "{what} was forwarded");
    }
    assert_eq!(h.get("api", "/", Some(OWNER)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn keep_alive_connections_carry_several_requests_and_chunked_bodies() {
    let h = Harness::start().await;
    let stream = TcpStream::connect(h.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for round in 0..3 {
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..5)
            .map(|i| Ok(Frame::data(Bytes::from(format!("c{round}{i};")))))
            .collect();
        let request = Request::post(format!("/round/{round}"))
            .header("host", h.host("frontend"))
            .header("cookie", h.cookie(OWNER, "frontend"))
            .body(StreamBody::new(futures_util::stream::iter(chunks)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            echo["body"],
            format!("c{round}0;c{round}1;c{round}2;c{round}3;c{round}4;")
        );
        assert!(echoed(&echo, "transfer-encoding").len() == 1);
        sender.ready().await.unwrap();
        let request = Request::get(format!("/after/{round}"))
            .header("host", h.host("frontend"))
            .header("cookie", h.cookie(OWNER, "frontend"))
            .body(StreamBody::new(futures_util::stream::iter(Vec::<
                Result<Frame<Bytes>, Infallible>,
            >::new(
            ))))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        sender.ready().await.unwrap();
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_and_not_forwarded() {
    let h = Harness::start_with(|c| c.max_request_body_bytes = 1024).await;
    let token = h.cookie(OWNER, "api");
    let host = h.host("api");
    let declared = raw(
        h.addr(),
        format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nCookie: {token}\r\nContent-Length: 1025\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&declared), 413, "{declared}");
    assert_eq!(h.upstream.reached(), (0, 0));

    let chunks = (0..3).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 512]))));
    let request = Request::post("/")
        .header("host", host.as_str())
        .header("cookie", token.as_str())
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let streamed = send(h.addr(), request).await;
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        h.upstream
            .bodies()
            .iter()
            .all(|seen| *seen == Seen::Incomplete),
        "{:?}",
        h.upstream.bodies()
    );

    let fits = Request::post("/")
        .header("host", host.as_str())
        .header("cookie", token.as_str())
        .body(Full::new(Bytes::from(vec![b'x'; 1024])))
        .unwrap();
    assert_eq!(send(h.addr(), fits).await.status, StatusCode::OK);
}

/// The largest RSS this process reached, in bytes (nextest runs each test in a
/// process of its own).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_streamed_body_goes_through_with_backpressure_not_buffered() {
    const TOTAL: u64 = 50 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let h = Harness::start_with(|c| c.max_request_body_bytes = 64 * 1024 * 1024).await;
    let rss_before = peak_rss();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    let mut stream = socket.connect(h.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let head = format!(
        "POST /slow-body HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        h.host("api"),
        h.cookie(OWNER, "api")
    );
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let written = std::sync::Arc::clone(&written);
        tokio::spawn(async move {
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut offset = 0u64;
            let mut chunk = Vec::with_capacity(CHUNK + 16);
            while offset < TOTAL {
                chunk.clear();
                chunk.extend_from_slice(format!("{CHUNK:x}\r\n").as_bytes());
                chunk.extend_from_slice(pattern_slice(offset, CHUNK));
                chunk.extend_from_slice(b"\r\n");
                stream.write_all(&chunk).await.unwrap();
                offset += CHUNK as u64;
                written.store(offset, std::sync::atomic::Ordering::SeqCst);
            }
            stream.write_all(b"0\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
                .await
                .ok();
            answer
        })
    };

    // The service has the head but reads nothing yet: the client must soon stall, with
    // no more in flight than the sockets' buffers and the gateway's small ones hold.
    tokio::time::timeout(Duration::from_secs(10), h.upstream.slow_started.notified())
        .await
        .unwrap();
    let mut last = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = written.load(std::sync::atomic::Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
        assert!(Instant::now() < deadline, "the client never stalled");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        last < TOTAL / 2,
        "{} MiB of a {} MiB body went in while nothing was read out",
        last >> 20,
        TOTAL >> 20
    );

    h.upstream.release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        answer.contains(&format!("{{\"bytes\":{TOTAL},\"intact\":true}}")),
        "{answer}"
    );
    let growth = peak_rss().saturating_sub(rss_before);
    eprintln!(
        "{} KiB in flight when the client stalled; peak memory grew by {} KiB for a {} MiB body",
        last >> 10,
        growth >> 10,
        TOTAL >> 20
    );
    assert!(
        growth < 24 * 1024 * 1024,
        "peak memory grew by {} MiB",
        growth >> 20
    );
}

#[tokio::test]
async fn request_targets_reach_the_service_exactly_as_sent() {
    let h = Harness::start().await;
    for target in [
        "/",
        "/?",
        "/a//b",
        "//other.example/x",
        "/%7Euser/a;b=c",
        "/search?q=%2e%2e%2f&x=..",
        "/a.b/..c/.d",
    ] {
        let answer = h.get("api", target, Some(OWNER)).await;
        assert_eq!(answer.status, StatusCode::OK, "{target}: {}", answer.text());
        assert_eq!(answer.json()["target"], target);
    }
}

struct FailingLookup;

impl gateway::SessionLookup for FailingLookup {
    async fn get(
        &self,
        _: &SessionId,
    ) -> Result<Option<gateway::SessionRoute>, gateway::sessions::LookupError> {
        Err(gateway::sessions::LookupError("table unreachable".into()))
    }
}

#[tokio::test]
async fn a_failed_session_look_up_is_503() {
    let signer = AlbSigner::generate("kid-503");
    let keys = gateway::testing::KeyServer::start(&[&signer])
        .await
        .unwrap();
    let gateway = gateway::serve(
        config(keys.url()),
        FailingLookup,
        gateway::PublicKeys::new(keys.url()),
    )
    .await
    .unwrap();
    let host = session_host("api", &SessionId::generate(), DOMAIN);
    let cookie = gateway::signin::SignIn::new(
        gateway::signin::SignInKey::new(SIGN_IN_KEY.to_vec()).unwrap(),
        Duration::from_secs(60),
    )
    .set_cookie(
        OWNER,
        &session_core::hosts::parse_host(&host, DOMAIN).unwrap(),
        now(),
    );
    let request = Request::get("/")
        .header("cookie", cookie.split(';').next().unwrap())
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(gateway.proxy_addr(), request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.text(), "service unavailable\n");
}

#[tokio::test]
async fn an_unreachable_service_is_502_a_silent_one_504_and_a_slow_upload_neither() {
    let h =
        Harness::start_with(|c| c.upstream_response_timeout = Duration::from_millis(1000)).await;
    let timed_out = h.get("api", "/hang", Some(OWNER)).await;
    assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(timed_out.text(), "gateway timeout\n");

    // An upload that keeps going is not cut, however long it takes in all.
    let chunks = futures_util::stream::unfold(0, |sent| async move {
        (sent < 20).then_some(())?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"slow;"))),
            sent + 1,
        ))
    });
    let slow_upload = Request::post("/upload")
        .header("host", h.host("api"))
        .header("cookie", h.cookie(OWNER, "api"))
        .body(StreamBody::new(chunks))
        .unwrap();
    let started = Instant::now();
    let answer = send(h.addr(), slow_upload).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["body"], "slow;".repeat(20));
    assert!(started.elapsed() > Duration::from_secs(1));

    // Bound and never listening, for the rest of the test: connections are refused.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = closed.local_addr().unwrap().as_socket().unwrap().port();
    let mut route = h.upstream.route(OWNER, "running");
    route.service_ports.insert("api".into(), port);
    let down = SessionId::generate();
    h.sessions.insert(down.clone(), route);
    let request = Request::get("/")
        .header("host", session_host("api", &down, DOMAIN))
        .header(
            "cookie",
            h.cookie_on(OWNER, &session_host("api", &down, DOMAIN)),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(h.addr(), request).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.text(), "bad gateway\n");
}

#[tokio::test]
async fn the_health_check_answers_ok_on_its_own_listener() {
    let h = Harness::start().await;
    let health = h.gateway.health_addr();
    let ok = send(
        health,
        Request::get("/healthz")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "ok\n"));
    let other = send(
        health,
        Request::get("/").body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_accepts_no_more() {
    let h = Harness::start().await;
    let addr = h.addr();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!(
        "POST /slow-body HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nContent-Length: 3\r\n\r\n",
        h.host("api"),
        h.cookie(OWNER, "api")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&[pattern(0), pattern(1), pattern(2)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.upstream.slow_started.notified())
        .await
        .unwrap();
    let Harness {
        gateway, upstream, ..
    } = h;
    let shutdown = tokio::spawn(gateway.shutdown(Duration::from_secs(10)));
    eventually(Duration::from_secs(5), "the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    upstream.release.notify_one();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("\"intact\":true"), "{answer}");
    assert!(
        shutdown.await.unwrap(),
        "connections outlived the grace period"
    );
}

#[tokio::test]
async fn hyper_alone_reads_content_length_with_transfer_encoding_as_chunked() {
    // Why `framing.rs` exists: straight to the upstream, hyper's own server takes this
    // head, drops Content-Length and reads the chunked body. If hyper ever refuses it,
    // this test says the second reader may no longer be needed.
    let upstream = Upstream::start().await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], upstream.ports["api"]));
    let answer = raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["body"], "abc");
    assert!(echoed(&echo, "content-length").is_empty());
    // And `raw` returned: hyper closed the connection after it.
}

#[tokio::test]
async fn each_request_logs_one_line_without_tokens_cookies_or_the_user_id() {
    let (captured, _capturing) = capture_logs();
    let h = Harness::start().await;
    let token = h.token(OWNER);
    let sign_in = h.cookie(OWNER, "suv_ui");
    let request = Request::post("/x")
        .header("host", h.host("suv_ui"))
        .header("x-amzn-oidc-data", token.as_str())
        .header(
            "cookie",
            format!("AWSELBAuthSessionCookie-0=alb-secret; app=app-secret; {sign_in}"),
        )
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    assert_eq!(send(h.addr(), request).await.status, StatusCode::OK);
    assert_eq!(
        h.get("api", "/", Some("intruder")).await.status,
        StatusCode::NOT_FOUND
    );
    eventually(Duration::from_secs(5), "two log lines", || {
        String::from_utf8_lossy(&captured.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("\"message\":\"request\""))
            .count()
            == 2
    })
    .await;
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["fields"]["message"] == "request")
        .collect();
    let forwarded = &lines[0]["fields"];
    assert_eq!(forwarded["method"], "POST");
    assert_eq!(forwarded["status"], 200);
    assert_eq!(forwarded["service"], "suv-ui");
    assert_eq!(forwarded["session_id"], h.session.as_str());
    assert_eq!(forwarded["bytes_in"], 5);
    assert!(forwarded["bytes_out"].as_u64().unwrap() > 0);
    assert!(forwarded["duration_ms"].as_f64().is_some());
    assert_eq!(
        forwarded["user_key"],
        session_core::template::user_key(OWNER)
    );
    let refused = &lines[1]["fields"];
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["refused"], "another user's session");
    let sign_in_value = sign_in.split_once('=').unwrap().1;
    for secret in [
        token.as_str(),
        sign_in_value,
        "alb-secret",
        "app-secret",
        OWNER,
        "intruder",
    ] {
        assert!(!logs.contains(secret), "the log holds {secret:?}: {logs}");
    }
}
