//! Every payload the simulator sends carries the keys Discord documents for its
//! objects: a real twilight shard receives traffic of every kind (plus REST-created
//! messages), and each dispatch and its nested objects are checked against the lists
//! in `tests/data/discord_fields.json`. Every payload must also parse with twilight.

mod common;

use std::collections::BTreeSet;

use common::{DEADLINE, shard, start};
use futures_util::StreamExt as _;
use serde_json::Value;
use shardmesh_sim::{EventKind, SimConfig, Simulator, UserPost};
use twilight_gateway::{EventTypeFlags, Message};
use twilight_model::id::Id;

/// The documented key lists, by object name.
fn fields() -> Value {
    serde_json::from_str(include_str!("data/discord_fields.json"))
        .expect("the field lists are JSON")
}

/// The keys of object `name` missing from `value`, as `path.key` strings.
fn missing(fields: &Value, name: &str, path: &str, value: &Value) -> Vec<String> {
    let keys = fields[name]["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no key list for {name}"));
    let Some(object) = value.as_object() else {
        return vec![format!("{path}: not an object ({name})")];
    };
    keys.iter()
        .map(|key| key.as_str().expect("keys are strings"))
        .filter(|key| !object.contains_key(*key))
        .map(|key| format!("{path}.{key} ({name})"))
        .collect()
}

/// Checks a list of objects, each as `name`.
fn each(fields: &Value, name: &str, path: &str, list: &Value, out: &mut Vec<String>) {
    for (n, item) in list.as_array().into_iter().flatten().enumerate() {
        out.extend(missing(fields, name, &format!("{path}[{n}]"), item));
    }
}

/// Every documented key missing from the `d` of a dispatch `t`, nested objects
/// included. Kinds without a list (answers to gateway commands) report nothing.
fn check_dispatch(fields: &Value, t: &str, d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut one =
        |name: &str, path: &str, value: &Value| out.extend(missing(fields, name, path, value));
    match t {
        "READY" => {
            one("ready", "d", d);
            one("user_self", "d.user", &d["user"]);
            one("ready_application", "d.application", &d["application"]);
            each(
                fields,
                "unavailable_guild",
                "d.guilds",
                &d["guilds"],
                &mut out,
            );
        }
        "GUILD_CREATE" => {
            one("guild_create", "d", d);
            each(fields, "role", "d.roles", &d["roles"], &mut out);
            each(fields, "channel", "d.channels", &d["channels"], &mut out);
            each(fields, "member", "d.members", &d["members"], &mut out);
            for (n, member) in d["members"].as_array().into_iter().flatten().enumerate() {
                out.extend(missing(
                    fields,
                    "user",
                    &format!("d.members[{n}].user"),
                    &member["user"],
                ));
            }
        }
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" => out.extend(check_message(fields, d)),
        "MESSAGE_DELETE" => one("message_delete", "d", d),
        "TYPING_START" => {
            one("typing_start", "d", d);
            one("member", "d.member", &d["member"]);
            one("user", "d.member.user", &d["member"]["user"]);
        }
        "PRESENCE_UPDATE" => {
            one("presence_update", "d", d);
            one("presence_user", "d.user", &d["user"]);
        }
        "GUILD_MEMBER_ADD" => {
            one("guild_member_add", "d", d);
            one("user", "d.user", &d["user"]);
        }
        "INTERACTION_CREATE" => {
            one("interaction", "d", d);
            one("interaction_member", "d.member", &d["member"]);
            one("user", "d.member.user", &d["member"]["user"]);
            one("interaction_guild", "d.guild", &d["guild"]);
            one("channel", "d.channel", &d["channel"]);
        }
        _ => {}
    }
    out
}

/// A message object (dispatched or returned by REST); webhook messages have no member.
fn check_message(fields: &Value, message: &Value) -> Vec<String> {
    let mut out = missing(fields, "message", "d", message);
    out.extend(missing(fields, "user", "d.author", &message["author"]));
    if message.get("webhook_id").is_none() {
        out.extend(missing(
            fields,
            "message_member",
            "d.member",
            &message["member"],
        ));
    }
    each(fields, "user", "d.mentions", &message["mentions"], &mut out);
    out
}

/// Reads the shard until `done` holds for the dispatches so far; returns every
/// dispatch as `(t, d)`, each already parsed by twilight.
async fn receive(
    client: &mut common::Client<twilight_gateway::queue::InMemoryQueue>,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut seen = BTreeSet::new();
    let mut dispatches = Vec::new();
    while !done(&dispatches) {
        let next = tokio::time::timeout_at(end, client.shard.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {seen:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            continue;
        };
        twilight_gateway::parse(text.clone(), EventTypeFlags::all())
            .unwrap_or_else(|e| panic!("twilight cannot parse {text}: {e:?}"))
            .unwrap_or_else(|| panic!("twilight skipped {text}"));
        let frame: Value = serde_json::from_str(&text).unwrap();
        if let Some(t) = frame["t"].as_str() {
            seen.insert(t.to_owned());
            dispatches.push((t.to_owned(), frame["d"].clone()));
        }
    }
    dispatches
}

fn traffic_config() -> SimConfig {
    SimConfig {
        shards: 1,
        guilds: 2,
        rate: 2_000.0,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn every_dispatch_carries_discords_documented_fields() {
    let sim = start(traffic_config()).await;
    let mut client = shard(&sim, 0, 1);
    let wanted: Vec<&str> = EventKind::MIX
        .iter()
        .map(|(kind, _)| kind.as_str())
        .chain(["READY", "GUILD_CREATE"])
        .collect();
    let dispatches = receive(&mut client, |got| {
        wanted.iter().all(|w| got.iter().any(|(t, _)| t == w))
    })
    .await;
    let fields = fields();
    let ready = &dispatches[0];
    assert_eq!(ready.0, "READY");
    assert_eq!(
        ready.1["application"]["id"], ready.1["user"]["id"],
        "READY's application is the bot's"
    );
    for (t, d) in &dispatches {
        let missing = check_dispatch(&fields, t, d);
        assert!(missing.is_empty(), "{t} lacks {missing:?}: {d}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_created_messages_and_rest_objects_carry_discords_documented_fields() {
    let sim = start(SimConfig {
        rate: 0.0,
        ..traffic_config()
    })
    .await;
    let mut client = shard(&sim, 0, 1);
    receive(&mut client, |got| {
        got.iter().any(|(t, _)| t == "GUILD_CREATE")
    })
    .await;

    let guild = &sim.guilds()[0];
    let channel = guild.channels[0];
    let user = UserPost {
        content: "hello".into(),
        username: "alice".into(),
        ..UserPost::default()
    };
    let posted = sim.post_as_user(channel, &user).unwrap();
    let http = twilight_http::Client::builder()
        .proxy(sim.http_proxy(), true)
        .token(sim.config().token.expose().to_owned())
        .ratelimiter(None)
        .build();
    http.create_message(Id::new(channel))
        .content("from the bot")
        .await
        .unwrap();
    http.execute_webhook(Id::new(guild.webhook_id), &guild.webhook_token)
        .content("from a webhook")
        .username("hook")
        .await
        .unwrap();
    let dispatches = receive(&mut client, |got| {
        got.iter().filter(|(t, _)| t == "MESSAGE_CREATE").count() == 3
    })
    .await;
    let fields = fields();
    let messages: Vec<&Value> = dispatches
        .iter()
        .filter(|(t, _)| t == "MESSAGE_CREATE")
        .map(|(_, d)| d)
        .chain([&posted])
        .collect();
    assert_eq!(
        messages.len(),
        4,
        "three dispatches and the returned message"
    );
    for message in messages {
        let missing = check_message(&fields, message);
        assert!(missing.is_empty(), "message lacks {missing:?}: {message}");
    }

    let me = rest_json(&sim, "/api/v10/users/@me").await;
    assert_eq!(
        missing(&fields, "user_self", "me", &me),
        Vec::<String>::new()
    );
    let app = rest_json(&sim, "/api/v10/applications/@me").await;
    assert_eq!(
        missing(&fields, "application", "app", &app),
        Vec::<String>::new()
    );
    assert_eq!(
        missing(&fields, "user_self", "app.bot", &app["bot"]),
        Vec::<String>::new()
    );
    assert_eq!(
        missing(&fields, "user", "app.owner", &app["owner"]),
        Vec::<String>::new()
    );
    sim.shutdown().await;
}

/// The checks bite: a payload without one of its listed keys, or with a nested
/// object stripped, is reported.
#[test]
fn a_removed_field_is_reported() {
    let fields = fields();
    let listed = |name: &str| -> Vec<String> {
        fields[name]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    let full = |name: &str| -> Value {
        Value::Object(listed(name).into_iter().map(|k| (k, Value::Null)).collect())
    };
    let mut message = full("message");
    message["author"] = full("user");
    message["member"] = full("message_member");
    message["mentions"] = Value::Array(vec![]);
    assert!(check_message(&fields, &message).is_empty());
    for key in listed("message") {
        let mut stripped = message.clone();
        stripped.as_object_mut().unwrap().remove(&key);
        assert!(
            !check_message(&fields, &stripped).is_empty(),
            "removing {key} went unnoticed"
        );
    }
    let mut stripped = message.clone();
    stripped["author"]
        .as_object_mut()
        .unwrap()
        .remove("global_name");
    assert_eq!(
        check_message(&fields, &stripped),
        ["d.author.global_name (user)"]
    );
    message["member"]
        .as_object_mut()
        .unwrap()
        .remove("joined_at");
    assert_eq!(
        check_dispatch(&fields, "MESSAGE_CREATE", &message),
        ["d.member.joined_at (message_member)"]
    );
}

async fn rest_json(sim: &Simulator, path: &str) -> Value {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\nauthorization: Bot {}\r\n\r\n",
        sim.config().token.expose()
    );
    let mut stream = tokio::net::TcpStream::connect(sim.http_proxy())
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}
