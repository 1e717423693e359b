//! Who is in a simulated guild: a member list derived from the guild and
//! [`SimConfig::guild_members`](crate::SimConfig), stored nowhere.
//!
//! Member 0 is the bot, member 1 the guild's owner, and member `k >= 2` the user
//! `guild_id | (MEMBER_TAG + k)` named `member-{k}`: ids in the guild's own id space,
//! so [`World::guild_of`] leads back to the guild and the same config always gives
//! the same members.

use std::fmt::Write as _;

use crate::world::{BOT_USER_ID, BOT_USERNAME, World, snowflake_unix_ms, write_timestamp};

/// Most members a guild may have: member ids must stay inside the guild's low 22 bits.
pub(crate) const MAX_MEMBERS: u32 = 1_000_000;

/// The low bits of a guild-space id from which member ids count (above the owner's).
const MEMBER_TAG: u64 = 0x10_0000;

/// The owner's username.
const OWNER_USERNAME: &str = "sim-owner";

/// One guild's members.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Roster {
    world: World,
    guild: u32,
    count: u32,
}

impl Roster {
    pub(crate) fn new(world: World, guild: u32, count: u32) -> Self {
        Self {
            world,
            guild,
            count,
        }
    }

    /// The user id of member `k`.
    pub(crate) fn user_id(&self, k: u32) -> u64 {
        match k {
            0 => BOT_USER_ID,
            1 => self.world.owner_id(self.guild),
            k => self.world.guild_id(self.guild) | (MEMBER_TAG + u64::from(k)),
        }
    }

    /// The username of member `k`.
    pub(crate) fn username(k: u32) -> String {
        match k {
            0 => BOT_USERNAME.to_owned(),
            1 => OWNER_USERNAME.to_owned(),
            k => format!("member-{k}"),
        }
    }

    /// Which member `user_id` is, if the guild has them.
    pub(crate) fn member_of(&self, user_id: u64) -> Option<u32> {
        if user_id == BOT_USER_ID {
            return Some(0);
        }
        if user_id == self.world.owner_id(self.guild) {
            return Some(1);
        }
        if self.world.guild_of(user_id) != Some(self.guild) {
            return None;
        }
        let k = (user_id & 0x3F_FFFF).checked_sub(MEMBER_TAG)?;
        u32::try_from(k)
            .ok()
            .filter(|&k| (2..self.count).contains(&k))
    }

    /// Members whose username starts with `query` (case-insensitive, as Discord
    /// matches), in member order, at most `limit` (`None`: all).
    pub(crate) fn matching(&self, query: &str, limit: Option<usize>) -> Vec<u32> {
        let query = query.to_lowercase();
        (0..self.count)
            .filter(|&k| Self::username(k).to_lowercase().starts_with(&query))
            .take(limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// Writes member `k` as a guild member object, user included.
    pub(crate) fn write_member(&self, out: &mut String, k: u32) {
        let bot = if k == 0 { r#","bot":true"# } else { "" };
        let _ = write!(
            out,
            r#"{{"user":{{"id":"{}","username":"{}","discriminator":"0","global_name":null,"avatar":null{bot}}},"nick":null,"avatar":null,"banner":null,"roles":[],"joined_at":""#,
            self.user_id(k),
            Self::username(k)
        );
        write_timestamp(out, snowflake_unix_ms(self.world.guild_id(self.guild)));
        out.push_str(
            r#"","premium_since":null,"deaf":false,"mute":false,"flags":0,"pending":false}"#,
        );
    }

    /// Writes member `k`'s presence: every member is online, idle or dnd in turn (a
    /// fixed pattern, so tests can predict it).
    pub(crate) fn write_presence(&self, out: &mut String, k: u32) {
        let status = Self::status(k);
        let _ = write!(
            out,
            r#"{{"user":{{"id":"{}"}},"guild_id":"{}","status":"{status}","activities":[],"client_status":{{"desktop":"{status}"}}}}"#,
            self.user_id(k),
            self.world.guild_id(self.guild)
        );
    }

    /// Member `k`'s status.
    pub(crate) fn status(k: u32) -> &'static str {
        ["online", "idle", "dnd"][(k % 3) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_lead_back_to_their_member() {
        let world = World::new(3, 1);
        let roster = Roster::new(world, 2, 50);
        for k in 0..50 {
            assert_eq!(roster.member_of(roster.user_id(k)), Some(k), "member {k}");
        }
        assert_eq!(
            roster.member_of(Roster::new(world, 2, 60).user_id(55)),
            None
        );
        assert_eq!(roster.member_of(Roster::new(world, 1, 50).user_id(5)), None);
        assert_eq!(roster.member_of(world.channel_id(2, 0)), None);
        assert_eq!(world.guild_of(roster.user_id(49)), Some(2));
    }

    #[test]
    fn queries_match_username_prefixes_up_to_the_limit() {
        let roster = Roster::new(World::new(1, 1), 0, 200);
        assert_eq!(roster.matching("MEMBER-1", None).len(), 10 + 100);
        assert_eq!(roster.matching("member-1", Some(3)), [10, 11, 12]);
        assert_eq!(roster.matching("shardmesh", None), [0]);
        assert_eq!(roster.matching("", None).len(), 200);
        assert!(roster.matching("nobody", None).is_empty());
    }

    #[test]
    fn members_and_presences_are_json() {
        let roster = Roster::new(World::new(1, 1), 0, 5);
        let mut out = String::new();
        roster.write_member(&mut out, 0);
        let member: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(member["user"]["id"], BOT_USER_ID.to_string());
        assert_eq!(member["user"]["bot"], true);
        out.clear();
        roster.write_presence(&mut out, 4);
        let presence: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(presence["status"], "idle");
    }
}
