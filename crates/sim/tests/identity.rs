//! The bot's view of itself over REST (`/users/@me`, `/applications/@me`) through
//! twilight-http, and Discord's JSON error shape on every refusal.

mod common;

use common::{DEADLINE, start};
use serde_json::{Value, json};
use shardmesh_sim::{BOT_USER_ID, SimConfig, Simulator};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use twilight_http::Client;

/// One raw request with an optional `Authorization`; returns the status, the
/// `content-type` and the body parsed as JSON (the test fails if it is not JSON).
async fn raw(
    sim: &Simulator,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, String, Value) {
    let auth = auth
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n{auth}content-length: 0\r\n\r\n"
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(sim.http_proxy()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_lowercase();
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {body:?}"));
    (status, content_type, body)
}

#[tokio::test]
async fn current_user_is_the_bot_as_twilight_reads_it() {
    let sim = start(SimConfig::default()).await;
    let user = common::rest_client(&sim)
        .current_user()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(user.id.get(), BOT_USER_ID);
    assert_eq!(user.name, "shardmesh-sim");
    assert!(user.bot);
    assert_eq!(user.discriminator, 0);
    assert_eq!(user.verified, Some(true));
    assert_eq!(user.email, None);
    assert_eq!(user.locale.as_deref(), Some("en-US"));

    let token = format!("Bot {}", sim.config().token.expose());
    let (status, _, body) = raw(&sim, "GET", "/api/v10/users/@me", Some(&token)).await;
    assert_eq!(status, 200);
    for key in [
        "global_name",
        "avatar",
        "banner",
        "accent_color",
        "email",
        "avatar_decoration_data",
    ] {
        assert!(
            body[key].is_null() && body.get(key).is_some(),
            "{key} missing or not null"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn current_application_is_readys_application_with_the_bot_and_owner() {
    let sim = start(SimConfig::default()).await;
    let client = common::rest_client(&sim);
    let app = client
        .current_user_application()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(app.id.get(), BOT_USER_ID);
    assert_eq!(app.bot.as_ref().map(|b| b.id.get()), Some(BOT_USER_ID));
    assert!(app.owner.is_some_and(|o| !o.bot));
    assert!(app.team.is_none());
    assert!(app.flags.is_some());

    let token = format!("Bot {}", sim.config().token.expose());
    let (status, _, oauth2) = raw(
        &sim,
        "GET",
        "/api/v10/oauth2/applications/@me",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, plain) = raw(&sim, "GET", "/api/v10/applications/@me", Some(&token)).await;
    assert_eq!(oauth2, plain, "both paths serve the same application");
    assert!(plain.get("team").is_some_and(Value::is_null));
    sim.shutdown().await;
}

#[tokio::test]
async fn every_refusal_is_discords_json() {
    let sim = start(SimConfig::default()).await;
    let unauthorized = json!({"message": "401: Unauthorized", "code": 0});
    for path in [
        "/api/v10/users/@me",
        "/api/v10/applications/@me",
        "/api/v10/oauth2/applications/@me",
    ] {
        assert_eq!(raw(&sim, "GET", path, None).await.2, unauthorized, "{path}");
        assert_eq!(
            raw(&sim, "GET", path, Some("Bot nope")).await.0,
            401,
            "{path}"
        );
        let bearer = format!("Bearer {}", sim.config().token.expose());
        assert_eq!(raw(&sim, "GET", path, Some(&bearer)).await.0, 401, "{path}");
    }
    assert!(http_refused(&sim).await);

    let token = format!("Bot {}", sim.config().token.expose());
    let (status, content_type, body) = raw(&sim, "GET", "/api/v10/nope", Some(&token)).await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    assert_eq!(body, json!({"message": "404: Not Found", "code": 0}));

    let (status, _, body) = raw(&sim, "DELETE", "/api/v10/users/@me", Some(&token)).await;
    assert_eq!(status, 405);
    assert_eq!(
        body,
        json!({"message": "405: Method Not Allowed", "code": 0})
    );

    let (status, _, body) = raw(&sim, "DELETE", "/api/v10/gateway", None).await;
    assert_eq!((status, &body["code"]), (405, &json!(0)));

    let channel = sim.guilds()[0].channels[0];
    for path in [
        "/api/v10/channels/abc/messages".to_owned(),
        format!("/api/v10/channels/{channel}/messages?limit=lots"),
    ] {
        let (status, _, body) = raw(&sim, "GET", &path, Some(&token)).await;
        assert_eq!(
            (status, &body["code"]),
            (400, &json!(50_035)),
            "{path}: {body}"
        );
        assert_eq!(body["message"], "Invalid Form Body");
    }
    sim.shutdown().await;
}

/// twilight-http sees a wrong token as an error (it parses the 401 body).
async fn http_refused(sim: &Simulator) -> bool {
    let client = Client::builder()
        .proxy(sim.http_proxy(), true)
        .token("nope".into())
        .ratelimiter(None)
        .build();
    client.current_user().await.is_err()
}
