//! Discord's checks on request fields, each adding to the request's Invalid Form Body
//! (50035) errors: webhook names, message content, embeds, avatars, list limits and
//! snowflakes in queries.
//!
//! The `_errors` codes are those Discord sends for these cases as far as public
//! reports show; clients branch on the top-level `code`, not on these.

use serde_json::Value;

use crate::messages::{CONTENT_LIMIT, ContentProblem, check_content};
use crate::reply::{ApiError, FormErrors};
use crate::world::avatar_hash;

/// Embeds a message may carry.
const EMBEDS_LIMIT: usize = 10;

/// Checks a webhook name (or a `username` override) at `path`: 1..=80 characters and
/// neither "clyde" nor "discord" in it, case-insensitive, as Discord's
/// create-webhook documentation says.
pub(super) fn webhook_name(errors: &mut FormErrors, path: &str, name: &str) {
    if !(1..=80).contains(&name.chars().count()) {
        errors.add(
            path,
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 80 in length.",
        );
    }
    let lower = name.to_lowercase();
    for word in ["clyde", "discord"] {
        if lower.contains(word) {
            let message = format!("Username cannot contain \"{word}\"");
            errors.add(path, "USERNAME_INVALID_CONTAINS", &message);
        }
    }
}

/// Checks content: 50006 when there is nothing to show, a form error past
/// [`CONTENT_LIMIT`] characters.
pub(super) fn content(
    errors: &mut FormErrors,
    content: &str,
    has_embeds: bool,
) -> Result<(), ApiError> {
    match check_content(content, has_embeds) {
        Ok(()) => Ok(()),
        Err(ContentProblem::Empty) => Err(ApiError::empty_message()),
        Err(ContentProblem::TooLong) => {
            let message = format!("Must be {CONTENT_LIMIT} or fewer in length.");
            errors.add("content", "BASE_TYPE_MAX_LENGTH", &message);
            Ok(())
        }
    }
}

/// Reads `embeds`: absent or null is none, else an array of at most 10 objects, kept
/// as given.
pub(super) fn embeds(errors: &mut FormErrors, embeds: Option<Value>) -> Vec<Value> {
    let list = match embeds {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => {
            errors.add("embeds", "BASE_TYPE_INVALID", "Must be an array.");
            return Vec::new();
        }
    };
    if list.len() > EMBEDS_LIMIT {
        let message = format!("Must be {EMBEDS_LIMIT} or fewer in length.");
        errors.add("embeds", "BASE_TYPE_MAX_LENGTH", &message);
    }
    for (n, embed) in list.iter().enumerate() {
        if !embed.is_object() {
            errors.add(
                &format!("embeds.{n}"),
                "MODEL_TYPE_CONVERT",
                "Only dictionaries may be used in a ModelType",
            );
        }
    }
    list
}

/// Reads a webhook's `avatar` image data (`data:image/…;base64,…`) into the hash
/// Discord would store it under.
pub(super) fn avatar_data(errors: &mut FormErrors, avatar: Option<&str>) -> Option<String> {
    let data = avatar?;
    let valid = data.starts_with("data:image/")
        && data
            .split_once(";base64,")
            .is_some_and(|(_, payload)| !payload.is_empty());
    if valid {
        Some(avatar_hash(data))
    } else {
        errors.add("avatar", "IMAGE_INVALID", "Invalid image data");
        None
    }
}

/// Reads the `limit` of a message list: 1..=100, default 50.
pub(super) fn limit(errors: &mut FormErrors, limit: Option<&str>) -> usize {
    const DEFAULT: usize = 50;
    let Some(raw) = limit else {
        return DEFAULT;
    };
    match raw.parse::<i64>() {
        Ok(n) if n < 1 => errors.add(
            "limit",
            "NUMBER_TYPE_MIN",
            "int value should be greater than or equal to 1.",
        ),
        Ok(n) if n > 100 => errors.add(
            "limit",
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 100.",
        ),
        Ok(n) => return usize::try_from(n).unwrap_or(DEFAULT),
        Err(_) => {
            let message = format!("Value \"{raw}\" is not int.");
            errors.add("limit", "NUMBER_TYPE_COERCE", &message);
        }
    }
    DEFAULT
}

/// Reads a snowflake query parameter at `path`.
pub(super) fn snowflake(errors: &mut FormErrors, path: &str, raw: Option<&str>) -> Option<u64> {
    let raw = raw?;
    let id = raw.parse::<u64>().ok();
    if id.is_none() {
        let message = format!("Value \"{raw}\" is not snowflake.");
        errors.add(path, "NUMBER_TYPE_COERCE", &message);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(check: impl FnOnce(&mut FormErrors)) -> bool {
        let mut errors = FormErrors::default();
        check(&mut errors);
        errors.into_result().is_err()
    }

    #[test]
    fn webhook_names_follow_discords_rules() {
        assert!(!refused(|e| webhook_name(e, "name", "mirror")));
        assert!(!refused(|e| webhook_name(e, "name", &"é".repeat(80))));
        assert!(refused(|e| webhook_name(e, "name", "")));
        assert!(refused(|e| webhook_name(e, "name", &"a".repeat(81))));
        assert!(refused(|e| webhook_name(e, "name", "My Clyde")));
        assert!(refused(|e| webhook_name(e, "name", "discordfan")));
    }

    #[test]
    fn limits_are_one_to_a_hundred_and_default_to_fifty() {
        let mut errors = FormErrors::default();
        assert_eq!(limit(&mut errors, None), 50);
        assert_eq!(limit(&mut errors, Some("100")), 100);
        assert_eq!(limit(&mut errors, Some("1")), 1);
        assert!(errors.into_result().is_ok());
        for bad in ["0", "101", "-3", "ten"] {
            assert!(refused(|e| {
                limit(e, Some(bad));
            }));
        }
    }

    #[test]
    fn embeds_must_be_a_short_list_of_objects() {
        let mut errors = FormErrors::default();
        let kept = embeds(&mut errors, Some(serde_json::json!([{"title": "t"}])));
        assert_eq!(kept, [serde_json::json!({"title": "t"})]);
        assert!(embeds(&mut errors, None).is_empty());
        assert!(errors.into_result().is_ok());
        assert!(refused(|e| {
            embeds(e, Some(serde_json::json!({"title": "t"})));
        }));
        assert!(refused(|e| {
            embeds(e, Some(serde_json::json!(["t"])));
        }));
        assert!(refused(|e| {
            embeds(e, Some(serde_json::json!(vec![serde_json::json!({}); 11])));
        }));
    }

    #[test]
    fn avatars_must_be_image_data() {
        let mut errors = FormErrors::default();
        let hash = avatar_data(&mut errors, Some("data:image/png;base64,iVBORw0KGgo="));
        assert!(hash.is_some_and(|h| crate::world::is_image_hash(&h)));
        assert!(avatar_data(&mut errors, None).is_none());
        assert!(errors.into_result().is_ok());
        assert!(refused(|e| {
            avatar_data(e, Some("https://cdn.example/a.png"));
        }));
    }
}
