//! Messages created on request (bot REST, webhook executions, user posts): their JSON
//! shape and the one path that stores a message in its channel and dispatches its
//! `MESSAGE_CREATE` to the guild's shard.
//!
//! Generated traffic writes its own, faster shape in `traffic.rs` and is never stored.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::Error;
use crate::state::Shared;
use crate::traffic::EventKind;
use crate::world::{BOT_USER_ID, BOT_USERNAME, is_image_hash, snowflake_unix_ms, write_timestamp};

/// Characters a message's content may have (Discord's limit; 50035 past it).
pub(crate) const CONTENT_LIMIT: usize = 2_000;

/// A message a human user posts, through [`Simulator::post_as_user`] or
/// `POST /_sim/channels/{id}/messages`.
///
/// [`Simulator::post_as_user`]: crate::Simulator::post_as_user
///
/// The author's user id is derived from the username, so posts with the same name
/// come from the same user (the control API can also choose one).
///
/// ```
/// use shardmesh_sim::UserPost;
///
/// let post = UserPost {
///     content: "hello".into(),
///     username: "alice".into(),
///     avatar: None,
/// };
/// # let _ = post;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPost {
    /// The message text: 1..=2,000 characters.
    pub content: String,
    /// The author's username: 2..=32 characters, Discord's username rule.
    pub username: String,
    /// The author's avatar hash (32 lowercase hex digits, `a_` in front when
    /// animated), as Discord's `User.avatar`; `None` for the default avatar.
    pub avatar: Option<String>,
}

/// Who a message is from; it decides the `author` (and whether a `member` is sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Author {
    /// The simulated bot itself.
    Bot,
    /// A human user.
    User {
        id: u64,
        username: String,
        avatar: Option<String>,
    },
    /// A webhook: Discord shows the webhook's id as the author's and the name and
    /// avatar of this execution.
    Webhook {
        id: u64,
        username: String,
        avatar: Option<String>,
    },
}

/// A message about to be created: everything but its id and place.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Draft {
    pub author: Author,
    pub content: String,
    /// Embed objects as the request gave them.
    pub embeds: Vec<Value>,
    pub tts: bool,
}

/// Why content cannot be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentProblem {
    /// Nothing to show: no content and no embeds (Discord's 50006).
    Empty,
    /// More than [`CONTENT_LIMIT`] characters.
    TooLong,
}

impl UserPost {
    /// Checks the post against Discord's rules and turns it into a draft by user `id`
    /// (`None`: the one the username names).
    fn draft(&self, id: Option<u64>) -> Result<Draft, Error> {
        match check_content(&self.content, false) {
            Ok(()) => {}
            Err(ContentProblem::Empty) => return Err(Error::empty_message()),
            Err(ContentProblem::TooLong) => {
                return Err(Error::invalid_post(
                    "content",
                    "must be 2000 or fewer in length",
                ));
            }
        }
        if !(2..=32).contains(&self.username.chars().count()) {
            return Err(Error::invalid_post(
                "author.username",
                "must be 2..=32 characters",
            ));
        }
        if self.avatar.as_deref().is_some_and(|a| !is_image_hash(a)) {
            return Err(Error::invalid_post(
                "author.avatar",
                "must be an image hash: 32 lowercase hex digits, `a_` in front if animated",
            ));
        }
        if id == Some(0) {
            return Err(Error::invalid_post("author.id", "must not be 0"));
        }
        Ok(Draft {
            author: Author::User {
                id: id.unwrap_or_else(|| crate::world::user_id(&self.username)),
                username: self.username.clone(),
                avatar: self.avatar.clone(),
            },
            content: self.content.clone(),
            embeds: Vec::new(),
            tts: false,
        })
    }
}

/// Discord's content rules: something to show (content, or embeds when `has_embeds`)
/// and at most [`CONTENT_LIMIT`] characters.
pub(crate) fn check_content(content: &str, has_embeds: bool) -> Result<(), ContentProblem> {
    if content.is_empty() && !has_embeds {
        return Err(ContentProblem::Empty);
    }
    if content.chars().count() > CONTENT_LIMIT {
        return Err(ContentProblem::TooLong);
    }
    Ok(())
}

/// A message just created.
#[derive(Debug)]
pub(crate) struct Posted {
    pub message: Value,
    /// `message` serialized, exactly as dispatched and stored.
    pub json: Arc<str>,
}

/// Posts `user_post` as a human user in `channel`, by user `id` (`None`: the one
/// the username names).
pub(crate) fn post_as_user(
    shared: &Shared,
    channel: u64,
    user_post: &UserPost,
    id: Option<u64>,
) -> Result<Posted, Error> {
    let guild = shared
        .world
        .guild_of_channel(channel)
        .ok_or(Error::unknown_channel(channel))?;
    let draft = user_post.draft(id)?;
    Ok(post(shared, guild, channel, &draft))
}

/// Creates the message in guild `guild`'s `channel`: stores it, then dispatches its
/// `MESSAGE_CREATE` (stored first, so a client that sees the event can read it back).
pub(crate) fn post(shared: &Shared, guild: u32, channel: u64, draft: &Draft) -> Posted {
    let world = &shared.world;
    let id = shared.ids.next();
    let message = message_json(id, channel, world.guild_id(guild), draft);
    let json: Arc<str> = message.to_string().into();
    shared.channels().push(channel, id, Arc::clone(&json));
    shared.dispatch_now(world.guild_id(guild), EventKind::MessageCreate, id, &json);
    Posted { message, json }
}

fn timestamp(ms: u64) -> String {
    let mut out = String::with_capacity(32);
    write_timestamp(&mut out, ms);
    out
}

/// The message object, as `MESSAGE_CREATE` carries it and REST returns it.
fn message_json(id: u64, channel: u64, guild: u64, draft: &Draft) -> Value {
    let (author, member, webhook_id) = match &draft.author {
        Author::Bot => (
            user_json(BOT_USER_ID, BOT_USERNAME, None, "0", true),
            Some(member_json(BOT_USER_ID)),
            None,
        ),
        Author::User {
            id,
            username,
            avatar,
        } => (
            user_json(*id, username, avatar.as_deref(), "0", false),
            Some(member_json(*id)),
            None,
        ),
        // Webhooks are no guild members: Discord sends no `member` for them.
        Author::Webhook {
            id,
            username,
            avatar,
        } => (
            user_json(*id, username, avatar.as_deref(), "0000", true),
            None,
            Some(id.to_string()),
        ),
    };
    let mut message = json!({
        "id": id.to_string(),
        "type": 0,
        "channel_id": channel.to_string(),
        "guild_id": guild.to_string(),
        "author": author,
        "content": draft.content,
        "timestamp": timestamp(snowflake_unix_ms(id)),
        "edited_timestamp": null,
        "tts": draft.tts,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": draft.embeds.iter().map(rich).collect::<Vec<_>>(),
        "components": [],
        "pinned": false,
        "flags": 0,
    });
    if let Some(member) = member {
        message["member"] = member;
    }
    if let Some(webhook_id) = webhook_id {
        message["webhook_id"] = webhook_id.into();
    }
    message
}

/// An embed as Discord stores it: as given, with `type: "rich"` when none was given
/// (Discord fills it in, and clients such as twilight require it).
fn rich(embed: &Value) -> Value {
    let mut embed = embed.clone();
    if let Some(fields) = embed.as_object_mut() {
        fields.entry("type").or_insert_with(|| "rich".into());
    }
    embed
}

/// The author as Discord shows other users: the public part of the User object (the
/// same keys as generated traffic's authors in `traffic.rs`).
fn user_json(
    id: u64,
    username: &str,
    avatar: Option<&str>,
    discriminator: &str,
    bot: bool,
) -> Value {
    json!({
        "id": id.to_string(),
        "username": username,
        "discriminator": discriminator,
        "global_name": null,
        "avatar": avatar,
        "public_flags": 0,
        "avatar_decoration_data": null,
        "collectibles": null,
        "primary_guild": null,
        "bot": bot,
    })
}

/// The partial member a guild message carries for its author.
fn member_json(user: u64) -> Value {
    json!({
        "roles": [],
        "joined_at": timestamp(snowflake_unix_ms(user)),
        "deaf": false,
        "mute": false,
        "flags": 0,
        "nick": null,
        "avatar": null,
        "banner": null,
        "premium_since": null,
        "pending": false,
        "communication_disabled_until": null,
        "avatar_decoration_data": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(username: &str) -> UserPost {
        UserPost {
            content: "hi".into(),
            username: username.into(),
            ..UserPost::default()
        }
    }

    #[test]
    fn user_posts_follow_discords_rules() {
        assert!(user("alice").draft(None).is_ok());
        let kind = |post: UserPost| format!("{:?}", post.draft(None).unwrap_err().kind());
        let empty = UserPost {
            content: String::new(),
            ..user("alice")
        };
        assert_eq!(kind(empty), "EmptyMessage");
        assert!(kind(user("a")).contains("author.username"));
        let long = UserPost {
            content: "x".repeat(2_001),
            ..user("alice")
        };
        assert!(kind(long).contains("content"));
        let url_avatar = UserPost {
            avatar: Some("https://cdn.example/a.png".into()),
            ..user("alice")
        };
        assert!(kind(url_avatar).contains("author.avatar"));
    }

    #[test]
    fn same_name_same_user_unless_an_id_is_given() {
        let author = |post: &UserPost, id| post.draft(id).unwrap().author;
        assert_eq!(author(&user("alice"), None), author(&user("alice"), None));
        assert_ne!(author(&user("alice"), None), author(&user("bob"), None));
        assert!(matches!(
            author(&user("alice"), Some(42)),
            Author::User { id: 42, .. }
        ));
        assert!(user("alice").draft(Some(0)).is_err());
    }

    #[test]
    fn webhook_messages_show_the_webhook_as_author_and_no_member() {
        let draft = Draft {
            author: Author::Webhook {
                id: 9,
                username: "alice".into(),
                avatar: Some("0".repeat(32)),
            },
            content: String::new(),
            embeds: vec![json!({"title": "t"}), json!({"type": "image"})],
            tts: true,
        };
        let message = message_json(1 << 22, 2, 3, &draft);
        assert_eq!(message["webhook_id"], "9");
        assert_eq!(message["author"]["id"], "9");
        assert_eq!(message["author"]["username"], "alice");
        assert_eq!(message["author"]["discriminator"], "0000");
        assert_eq!(message["author"]["bot"], true);
        assert!(message.get("member").is_none());
        assert_eq!(message["tts"], true);
        assert_eq!(
            message["embeds"],
            json!([{"title": "t", "type": "rich"}, {"type": "image"}])
        );
    }

    #[test]
    fn user_messages_carry_a_member_and_no_webhook_id() {
        let draft = user("alice").draft(None).unwrap();
        let message = message_json(1 << 22, 2, 3, &draft);
        assert_eq!(message["author"]["bot"], false);
        assert_eq!(message["member"]["roles"], json!([]));
        assert!(message.get("webhook_id").is_none());
        assert_eq!(message["content"], "hi");
        assert_eq!(message["guild_id"], "3");
    }
}
