//! Twitch's IRC lines into [`ChatMessage`]s.
//!
//! Twitch speaks IRC with IRCv3 message tags
//! (<https://ircv3.net/specs/extensions/message-tags>) over a WebSocket; one
//! text frame may carry several `\r\n`-separated lines ([`split_frame`]).
//! [`parse`] reads one line into a borrowed [`Line`] without copying it;
//! [`event`] turns a line into what the observer acts on: a message to
//! archive, a `PING` to answer, a `RECONNECT` to obey, the join to confirm,
//! or a failed login.
//!
//! Every line is untrusted. Nothing here panics on any input, a line over
//! [`MAX_LINE_BYTES`] is refused before it is read, and every field copied
//! out of a line is capped: the text at [`MAX_TEXT_BYTES`] (flagged
//! `truncated`), the emote ranges at [`MAX_EMOTES_BYTES`], every other
//! string at [`MAX_FIELD_BYTES`], and the badge and parameter lists at
//! [`MAX_BADGES`] and [`MAX_PARAMS`] entries.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use colony::chat::{ChatKind, ChatMessage, MAX_TEXT_BYTES};
use colony::exit::{Classify, ErrorClass};

/// The longest IRC line read at all; a longer one is counted and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The longest id, name, colour, badge, parameter or system text kept, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// The longest `emotes` tag kept (a 500-character message of one-letter
/// emotes needs about 4 KiB); a longer one is cut after its last whole range.
pub const MAX_EMOTES_BYTES: usize = 4 * 1024;
/// Badges kept per message.
pub const MAX_BADGES: usize = 32;
/// `msg-param-*` (or ROOMSTATE setting) entries kept per message.
pub const MAX_PARAMS: usize = 64;
/// RFC 1459 allows 15 parameters; more is a malformed line.
const MAX_PARAMS_PER_LINE: usize = 15;

/// Why a line was refused. The observer counts these and skips the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrcError {
    #[error("the line is {len} bytes, over the {MAX_LINE_BYTES}-byte limit")]
    TooLong { len: usize },
    #[error("the line is empty")]
    Empty,
    #[error("the line contains a NUL, CR or LF")]
    ControlCharacter,
    #[error("the line has no command")]
    NoCommand,
    #[error("the line's command is not a word or a three-digit number")]
    BadCommand,
    #[error("the line has more than {MAX_PARAMS_PER_LINE} parameters")]
    TooManyParams,
    #[error("a {command} line without its {missing}")]
    Missing { command: &'static str, missing: &'static str },
}

/// A line that cannot be read stays so: asking again cannot help, and the
/// operator has nothing to fix. The observer counts it and reads on.
impl Classify for IrcError {
    fn class(&self) -> ErrorClass {
        match self {
            IrcError::TooLong { .. }
            | IrcError::Empty
            | IrcError::ControlCharacter
            | IrcError::NoCommand
            | IrcError::BadCommand
            | IrcError::TooManyParams
            | IrcError::Missing { .. } => ErrorClass::Permanent,
        }
    }
}

/// One IRC line, borrowed from the input: `[@tags] [:prefix] COMMAND [params] [:trailing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    tags: &'a str,
    prefix: Option<&'a str>,
    command: &'a str,
    params: Vec<&'a str>,
    trailing: Option<&'a str>,
}

impl<'a> Line<'a> {
    /// Every tag in the order sent, with its value unescaped (`key` alone has
    /// the value `""`).
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
        self.tags.split(';').filter(|t| !t.is_empty()).map(|t| {
            let (key, value) = t.split_once('=').unwrap_or((t, ""));
            (key, unescape(value))
        })
    }

    /// One tag's unescaped value; a tag sent twice counts as its last value,
    /// as the message-tags specification says.
    pub fn tag(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self
            .tags
            .split(';')
            .filter_map(|t| {
                let (k, v) = t.split_once('=').unwrap_or((t, ""));
                (k == key).then_some(v)
            })
            .next_back()?;
        Some(unescape(raw))
    }

    /// A tag with a non-empty value.
    fn tag_value(&self, key: &str) -> Option<Cow<'a, str>> {
        self.tag(key).filter(|v| !v.is_empty())
    }

    /// The whole prefix: `nick!user@host` or a server name.
    pub fn prefix(&self) -> Option<&'a str> {
        self.prefix
    }

    /// The nick of the prefix (`ronni` of `ronni!ronni@ronni.tmi.twitch.tv`).
    pub fn nick(&self) -> Option<&'a str> {
        let prefix = self.prefix?;
        let nick = prefix.split(['!', '@']).next().unwrap_or(prefix);
        (!nick.is_empty()).then_some(nick)
    }

    /// The command, as sent (`PRIVMSG`, `366`).
    pub fn command(&self) -> &'a str {
        self.command
    }

    /// The parameters before the trailing one (`#channel` of a PRIVMSG).
    pub fn params(&self) -> &[&'a str] {
        &self.params
    }

    /// The trailing parameter, after ` :` (a PRIVMSG's text).
    pub fn trailing(&self) -> Option<&'a str> {
        self.trailing
    }
}

/// Read one line (without its `\r\n`).
pub fn parse(line: &str) -> Result<Line<'_>, IrcError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(IrcError::TooLong { len: line.len() });
    }
    if line.bytes().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
        return Err(IrcError::ControlCharacter);
    }
    let mut rest = line.trim_start_matches(' ');
    if rest.is_empty() {
        return Err(IrcError::Empty);
    }
    let mut tags = "";
    if let Some(tagged) = rest.strip_prefix('@') {
        let (t, after) = tagged.split_once(' ').ok_or(IrcError::NoCommand)?;
        tags = t;
        rest = after.trim_start_matches(' ');
    }
    let mut prefix = None;
    if let Some(prefixed) = rest.strip_prefix(':') {
        let (p, after) = prefixed.split_once(' ').ok_or(IrcError::NoCommand)?;
        prefix = Some(p);
        rest = after.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(IrcError::NoCommand);
    }
    let word = command.bytes().all(|b| b.is_ascii_alphabetic());
    let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
    if !word && !numeric {
        return Err(IrcError::BadCommand);
    }
    let mut params = Vec::new();
    let mut trailing = None;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(t) = rest.strip_prefix(':') {
            trailing = Some(t);
            break;
        }
        if params.len() == MAX_PARAMS_PER_LINE {
            return Err(IrcError::TooManyParams);
        }
        let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(param);
        rest = after;
    }
    Ok(Line { tags, prefix, command, params, trailing })
}

/// The lines of one WebSocket text frame: split on `\r\n` (a bare `\n` is
/// accepted too), empty lines skipped.
pub fn split_frame(frame: &str) -> impl Iterator<Item = &str> {
    frame.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.is_empty())
}

/// IRCv3 tag-value unescaping: `\:` `;`, `\s` space, `\\` `\`, `\r`, `\n`;
/// any other escaped character stands for itself, and a lone trailing
/// backslash is dropped. Borrows when there is nothing to unescape.
pub fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// What a line means to the observer.
// Messages are nearly every line, so they are not boxed: the other
// variants are rare and a box would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Something to archive.
    Message(ChatMessage),
    /// Answer `PONG :{this}`.
    Ping(String),
    /// Twitch will close the connection: reconnect now.
    Reconnect,
    /// The channel was joined (our `JOIN` echoed, or the end of `NAMES`, `366`).
    Joined,
    /// The server refused the login; its reason.
    LoginFailed(String),
    /// Anything else (`CAP`, `001`, `USERSTATE`, a channel `NOTICE`...).
    Other,
}

/// Read one line into an [`Event`]. `received_at` stands in for the server's
/// time where a line has no `tmi-sent-ts`.
pub fn event(line: &str, received_at: DateTime<Utc>) -> Result<Event, IrcError> {
    let parsed = parse(line)?;
    let kind = match parsed.command {
        "PRIVMSG" => ChatKind::Privmsg,
        "USERNOTICE" => ChatKind::Usernotice,
        "CLEARCHAT" => ChatKind::Clearchat,
        "CLEARMSG" => ChatKind::Clearmsg,
        "ROOMSTATE" => ChatKind::Roomstate,
        "PING" => {
            let token = parsed.trailing.or(parsed.params.first().copied()).unwrap_or("tmi.twitch.tv");
            return Ok(Event::Ping(cap(token, MAX_FIELD_BYTES)));
        }
        "RECONNECT" => return Ok(Event::Reconnect),
        // Without the membership capability (never requested), the only
        // JOIN Twitch sends is the echo of our own.
        "JOIN" | "366" => return Ok(Event::Joined),
        "NOTICE" if parsed.params.first() == Some(&"*") => {
            return Ok(Event::LoginFailed(cap(parsed.trailing.unwrap_or("login refused"), MAX_FIELD_BYTES)));
        }
        _ => return Ok(Event::Other),
    };
    message(&parsed, kind, received_at).map(Event::Message)
}

fn message(line: &Line<'_>, kind: ChatKind, received_at: DateTime<Utc>) -> Result<ChatMessage, IrcError> {
    let command: &'static str = match kind {
        ChatKind::Privmsg => "PRIVMSG",
        ChatKind::Usernotice => "USERNOTICE",
        ChatKind::Clearchat => "CLEARCHAT",
        ChatKind::Clearmsg => "CLEARMSG",
        ChatKind::Roomstate => "ROOMSTATE",
    };
    if line.params.first().is_none_or(|c| !c.starts_with('#')) {
        return Err(IrcError::Missing { command, missing: "channel" });
    }
    let sent_at = line
        .tag("tmi-sent-ts")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(received_at);
    let field = |key: &str| line.tag_value(key).map(|v| cap(&v, MAX_FIELD_BYTES));
    let mut m = ChatMessage::new(String::new(), kind, sent_at);
    match kind {
        ChatKind::Privmsg | ChatKind::Usernotice => {
            m.user_id = field("user-id");
            m.login = match kind {
                ChatKind::Privmsg => line.nick().map(|n| cap(&n.to_lowercase(), MAX_FIELD_BYTES)),
                _ => lowercase_field(line, "login"),
            };
            m.display_name = field("display-name");
            m.color = field("color");
            m.badges = line.tag_value("badges").map(|b| badges(&b)).unwrap_or_default();
            m.emotes = line.tag_value("emotes").map(|e| cap_emotes(&e));
            let mut text = line.trailing;
            if kind == ChatKind::Privmsg {
                let said = text.ok_or(IrcError::Missing { command, missing: "text" })?;
                // `/me`: the text inside CTCP ACTION, to which the emote ranges refer.
                if let Some(action) = said.strip_prefix("\u{1}ACTION ") {
                    text = Some(action.strip_suffix('\u{1}').unwrap_or(action));
                    m.params.insert("action".into(), "1".into());
                }
                if let Some(bits) = line.tag_value("bits") {
                    m.params.insert("bits".into(), cap(&bits, MAX_FIELD_BYTES));
                }
            } else {
                m.notice = field("msg-id");
                m.system_text = field("system-msg");
                for (key, value) in line.tags() {
                    if let Some(name) = key.strip_prefix("msg-param-")
                        && !name.is_empty()
                        && m.params.len() < MAX_PARAMS
                    {
                        m.params.insert(cap(name, MAX_FIELD_BYTES), cap(&value, MAX_FIELD_BYTES));
                    }
                }
            }
            if let Some(text) = text {
                m.truncated = text.len() > MAX_TEXT_BYTES;
                m.text = Some(cap(text, MAX_TEXT_BYTES));
            }
        }
        ChatKind::Clearchat => {
            m.target = line.trailing.filter(|t| !t.is_empty()).map(|t| cap(&t.to_lowercase(), MAX_FIELD_BYTES));
            m.duration_secs = line.tag("ban-duration").and_then(|d| d.parse().ok());
            if let Some(user) = field("target-user-id") {
                m.params.insert("target-user-id".into(), user);
            }
        }
        ChatKind::Clearmsg => {
            m.login = lowercase_field(line, "login");
            m.target = Some(field("target-msg-id").ok_or(IrcError::Missing { command, missing: "target-msg-id" })?);
            if let Some(text) = line.trailing {
                m.truncated = text.len() > MAX_TEXT_BYTES;
                m.text = Some(cap(text, MAX_TEXT_BYTES));
            }
        }
        ChatKind::Roomstate => {
            for (key, value) in line.tags() {
                if key != "room-id" && !key.is_empty() && m.params.len() < MAX_PARAMS {
                    m.params.insert(cap(key, MAX_FIELD_BYTES), cap(&value, MAX_FIELD_BYTES));
                }
            }
        }
    }
    m.id = match field("id") {
        Some(id) => id,
        None => stable_id(line, command, sent_at),
    };
    Ok(m)
}

/// A tag lowercased, then capped (lowercasing can lengthen a string).
fn lowercase_field(line: &Line<'_>, key: &str) -> Option<String> {
    line.tag_value(key).map(|v| cap(&v.to_lowercase(), MAX_FIELD_BYTES))
}

/// `{kind}:{sent_at ms}:{hash}` for an event Twitch gives no id: the hash
/// covers the line but for the tags that differ between two connections
/// hearing the same event, so both observers name it alike.
fn stable_id(line: &Line<'_>, command: &str, sent_at: DateTime<Utc>) -> String {
    let mut hash = Sha256::new();
    for (key, value) in line.tags() {
        if !matches!(key, "tmi-sent-ts" | "client-nonce" | "id") {
            hash.update(key.as_bytes());
            hash.update(b"=");
            hash.update(value.as_bytes());
            hash.update(b";");
        }
    }
    hash.update(command.as_bytes());
    for param in &line.params {
        hash.update(b" ");
        hash.update(param.as_bytes());
    }
    if let Some(trailing) = line.trailing {
        hash.update(b" :");
        hash.update(trailing.as_bytes());
    }
    let digest = hash.finalize();
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{}:{short}", command.to_lowercase(), sent_at.timestamp_millis())
}

/// `subscriber/12,premium/1` into (badge, version) pairs.
fn badges(raw: &str) -> Vec<(String, String)> {
    raw.split(',')
        .filter(|b| !b.is_empty())
        .take(MAX_BADGES)
        .map(|b| {
            let (name, version) = b.split_once('/').unwrap_or((b, ""));
            (cap(name, MAX_FIELD_BYTES), cap(version, MAX_FIELD_BYTES))
        })
        .collect()
}

/// The `emotes` tag, cut after its last whole range if it is too long.
fn cap_emotes(raw: &str) -> String {
    if raw.len() <= MAX_EMOTES_BYTES {
        return raw.to_owned();
    }
    let head = &raw[..floor_char_boundary(raw, MAX_EMOTES_BYTES + 1)];
    let end = head.rfind([',', '/']).unwrap_or(0);
    head[..end].to_owned()
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cap(s: &str, max: usize) -> String {
    s[..floor_char_boundary(s, max)].to_owned()
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000).unwrap()
    }

    fn msg(line: &str) -> ChatMessage {
        match event(line, at()) {
            Ok(Event::Message(m)) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn lines_split_into_tags_prefix_command_and_params() {
        let line =
            parse("@a=1;b=x\\sy\\:z\\\\w\\r\\n\\q\\;c :nick!nick@nick.tmi.twitch.tv PRIVMSG #chan :hi there").unwrap();
        assert_eq!(line.tag("a").as_deref(), Some("1"));
        assert_eq!(line.tag("b").as_deref(), Some("x y;z\\w\r\nq"));
        assert_eq!(line.tag("c").as_deref(), Some(""));
        assert_eq!(line.tag("d"), None);
        assert_eq!(line.nick(), Some("nick"));
        assert_eq!(line.prefix(), Some("nick!nick@nick.tmi.twitch.tv"));
        assert_eq!(line.command(), "PRIVMSG");
        assert_eq!(line.params(), ["#chan"]);
        assert_eq!(line.trailing(), Some("hi there"));
        assert_eq!(parse("@k=v;k=w CMD").unwrap().tag("k").as_deref(), Some("w"));
        assert_eq!(parse("CAP * ACK :twitch.tv/tags twitch.tv/commands").unwrap().params(), ["*", "ACK"]);
        assert!(matches!(parse(":tmi.twitch.tv 366 justinfan1 #c :End of /NAMES list").unwrap().command(), "366"));
    }

    #[test]
    fn malformed_lines_are_typed_errors() {
        assert_eq!(parse(""), Err(IrcError::Empty));
        assert_eq!(parse("   "), Err(IrcError::Empty));
        assert_eq!(parse("@a=b"), Err(IrcError::NoCommand));
        assert_eq!(parse(":prefix"), Err(IrcError::NoCommand));
        assert_eq!(parse("@a=b :p "), Err(IrcError::NoCommand));
        assert_eq!(parse("PRIV-MSG #c"), Err(IrcError::BadCommand));
        assert_eq!(parse("12 #c"), Err(IrcError::BadCommand));
        assert_eq!(parse("A\r\nB"), Err(IrcError::ControlCharacter));
        assert_eq!(parse(&format!("X{}", " p".repeat(16))), Err(IrcError::TooManyParams));
        let long = format!("PRIVMSG #c :{}", "a".repeat(MAX_LINE_BYTES));
        assert!(matches!(parse(&long), Err(IrcError::TooLong { .. })));
        assert!(matches!(event(&long, at()), Err(IrcError::TooLong { .. })));
        assert_eq!(event(":a!a@a PRIVMSG #c", at()), Err(IrcError::Missing { command: "PRIVMSG", missing: "text" }));
        assert_eq!(event(":a!a@a PRIVMSG :x", at()), Err(IrcError::Missing { command: "PRIVMSG", missing: "channel" }));
        assert_eq!(
            event("@login=a :tmi.twitch.tv CLEARMSG #c :x", at()),
            Err(IrcError::Missing { command: "CLEARMSG", missing: "target-msg-id" })
        );
        assert_eq!(unescape("ab\\"), "ab");
    }

    #[test]
    fn frames_split_into_lines() {
        let frame = "PING :tmi.twitch.tv\r\n:tmi.twitch.tv RECONNECT\r\n\r\nlast\n";
        assert_eq!(split_frame(frame).collect::<Vec<_>>(), ["PING :tmi.twitch.tv", ":tmi.twitch.tv RECONNECT", "last"]);
        assert_eq!(split_frame("").count(), 0);
    }

    #[test]
    fn privmsg_with_emotes_and_non_ascii_text() {
        let line = "@badge-info=subscriber/14;badges=subscriber/12,premium/1;client-nonce=abc;color=#1E90FF;\
                    display-name=Gänseblümchen;emotes=25:0-4,12-16/1902:6-10;first-msg=0;flags=;\
                    id=885196de-cb67-427a-baa8-82f9b0fcd05f;mod=0;returning-chatter=0;room-id=12826;subscriber=1;\
                    tmi-sent-ts=1700000001234;turbo=0;user-id=713936733;user-type= \
                    :gaensebluemchen!gaensebluemchen@gaensebluemchen.tmi.twitch.tv PRIVMSG #twitch :Kappa Keepo Kappa ünd 日本語 🎉";
        let m = msg(line);
        assert_eq!(m.kind, ChatKind::Privmsg);
        assert_eq!(m.id, "885196de-cb67-427a-baa8-82f9b0fcd05f");
        assert_eq!(m.sent_at.timestamp_millis(), 1_700_000_001_234);
        assert_eq!(m.user_id.as_deref(), Some("713936733"));
        assert_eq!(m.login.as_deref(), Some("gaensebluemchen"));
        assert_eq!(m.display_name.as_deref(), Some("Gänseblümchen"));
        assert_eq!(m.color.as_deref(), Some("#1E90FF"));
        assert_eq!(m.badges, [("subscriber".into(), "12".into()), ("premium".into(), "1".into())]);
        assert_eq!(m.text.as_deref(), Some("Kappa Keepo Kappa ünd 日本語 🎉"));
        assert_eq!(m.emotes.as_deref(), Some("25:0-4,12-16/1902:6-10"));
        assert!(!m.truncated && m.params.is_empty() && m.notice.is_none());
    }

    #[test]
    fn cheers_and_actions_keep_their_bits_and_inner_text() {
        let m =
            msg("@bits=100;id=c1;tmi-sent-ts=1700000000000;user-id=1 :a!a@a PRIVMSG #c :\u{1}ACTION cheer100 hi\u{1}");
        assert_eq!(m.text.as_deref(), Some("cheer100 hi"));
        assert_eq!(m.params.get("bits").map(String::as_str), Some("100"));
        assert_eq!(m.params.get("action").map(String::as_str), Some("1"));
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary_and_flagged() {
        let text = "é".repeat(MAX_TEXT_BYTES); // 2 bytes each
        let m = msg(&format!("@id=x :a!a@a PRIVMSG #c :{text}"));
        let kept = m.text.unwrap();
        assert!(m.truncated && kept.len() <= MAX_TEXT_BYTES && kept.len() == MAX_TEXT_BYTES);
        let name = "ü".repeat(500);
        let m = msg(&format!("@id=x;display-name={name};badges={} :a!a@a PRIVMSG #c :hi", "b/1,".repeat(100)));
        assert!(m.display_name.unwrap().len() <= MAX_FIELD_BYTES);
        assert_eq!(m.badges.len(), MAX_BADGES);
    }

    #[test]
    fn sub_resub_gift_raid_and_announcement() {
        let sub = msg(
            "@badge-info=subscriber/0;badges=subscriber/0,premium/1;color=;display-name=Ronni;emotes=;flags=;\
                       id=db25007f-7a18-43eb-9379-80131e44d633;login=ronni;mod=0;msg-id=sub;msg-param-cumulative-months=1;\
                       msg-param-months=0;msg-param-multimonth-duration=1;msg-param-should-share-streak=0;\
                       msg-param-sub-plan-name=Channel\\sSubscription\\s(dallas);msg-param-sub-plan=Prime;room-id=12345678;\
                       subscriber=1;system-msg=Ronni\\ssubscribed\\swith\\sPrime.;tmi-sent-ts=1700000002000;user-id=87654321;\
                       user-type= :tmi.twitch.tv USERNOTICE #dallas",
        );
        assert_eq!((sub.kind, sub.notice.as_deref()), (ChatKind::Usernotice, Some("sub")));
        assert_eq!(sub.login.as_deref(), Some("ronni"));
        assert_eq!(sub.system_text.as_deref(), Some("Ronni subscribed with Prime."));
        assert_eq!(sub.params["sub-plan"], "Prime");
        assert_eq!(sub.params["sub-plan-name"], "Channel Subscription (dallas)");
        assert_eq!((sub.text, sub.color), (None, None));

        let resub = msg("@badges=subscriber/6;display-name=Ronni;emotes=25:0-4;id=r1;login=ronni;msg-id=resub;\
                         msg-param-cumulative-months=6;msg-param-streak-months=2;msg-param-sub-plan=1000;\
                         system-msg=Ronni\\ssubscribed\\sat\\sTier\\s1.\\sThey've\\ssubscribed\\sfor\\s6\\smonths!;\
                         tmi-sent-ts=1700000003000;user-id=87654321 :tmi.twitch.tv USERNOTICE #dallas :Kappa great stream");
        assert_eq!(resub.notice.as_deref(), Some("resub"));
        assert_eq!(resub.text.as_deref(), Some("Kappa great stream"));
        assert_eq!(resub.emotes.as_deref(), Some("25:0-4"));
        assert_eq!(resub.params["cumulative-months"], "6");

        let gift = msg("@display-name=TWW2;id=g1;login=tww2;msg-id=subgift;msg-param-months=1;\
                        msg-param-recipient-display-name=Mr_Woodchuck;msg-param-recipient-id=55554444;\
                        msg-param-recipient-user-name=mr_woodchuck;msg-param-sub-plan=1000;\
                        system-msg=TWW2\\sgifted\\sa\\sTier\\s1\\ssub\\sto\\sMr_Woodchuck!;tmi-sent-ts=1700000004000;\
                        user-id=87654321 :tmi.twitch.tv USERNOTICE #forstycup");
        assert_eq!(gift.notice.as_deref(), Some("subgift"));
        assert_eq!(gift.params["recipient-user-name"], "mr_woodchuck");

        let raid = msg("@display-name=TestChannel;id=3d830f12;login=testchannel;msg-id=raid;\
                        msg-param-displayName=TestChannel;msg-param-login=testchannel;msg-param-viewerCount=15;\
                        system-msg=15\\sraiders\\sfrom\\sTestChannel\\shave\\sjoined\\n!;tmi-sent-ts=1700000005000;\
                        user-id=123456 :tmi.twitch.tv USERNOTICE #othertestchannel");
        assert_eq!(raid.notice.as_deref(), Some("raid"));
        assert_eq!(raid.params["viewerCount"], "15");
        assert_eq!(raid.system_text.as_deref(), Some("15 raiders from TestChannel have joined\n!"));

        let announce = msg("@badges=broadcaster/1;color=#033700;display-name=Dallas;id=a1;login=dallas;\
                            msg-id=announcement;msg-param-color=PRIMARY;system-msg=;tmi-sent-ts=1700000006000;\
                            user-id=1 :tmi.twitch.tv USERNOTICE #dallas :Hello everyone 🎉");
        assert_eq!(announce.notice.as_deref(), Some("announcement"));
        assert_eq!(announce.text.as_deref(), Some("Hello everyone 🎉"));
        assert_eq!(announce.system_text, None);
        assert_eq!(announce.params["color"], "PRIMARY");
    }

    #[test]
    fn clearchat_timeout_ban_and_clear_all() {
        let timeout = msg("@ban-duration=350;room-id=12345678;target-user-id=87654321;tmi-sent-ts=1642719320727 \
                           :tmi.twitch.tv CLEARCHAT #dallas :Ronni");
        assert_eq!(timeout.kind, ChatKind::Clearchat);
        assert_eq!((timeout.target.as_deref(), timeout.duration_secs), (Some("ronni"), Some(350)));
        assert_eq!(timeout.params["target-user-id"], "87654321");
        assert!(timeout.id.starts_with("clearchat:1642719320727:"), "{}", timeout.id);

        let ban = msg("@room-id=12345678;target-user-id=87654321;tmi-sent-ts=1642715756806 \
                       :tmi.twitch.tv CLEARCHAT #dallas :ronni");
        assert_eq!((ban.target.as_deref(), ban.duration_secs), (Some("ronni"), None));

        let all = msg("@room-id=12345678;tmi-sent-ts=1642715695392 :tmi.twitch.tv CLEARCHAT #dallas");
        assert_eq!((all.target, all.duration_secs), (None, None));
        assert_ne!(all.id, ban.id);
    }

    #[test]
    fn ids_made_for_events_without_one_are_stable() {
        let a = "@room-id=1;target-user-id=2;tmi-sent-ts=1642715756806 :tmi.twitch.tv CLEARCHAT #dallas :ronni";
        let later = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let (Event::Message(x), Event::Message(y)) = (event(a, at()).unwrap(), event(a, later).unwrap()) else {
            panic!()
        };
        assert_eq!(x.id, y.id);
        let other_user = a.replace("ronni", "other");
        assert_ne!(msg(&other_user).id, x.id);
    }

    #[test]
    fn clearmsg_and_roomstate() {
        let clear = msg("@login=ronni;room-id=;target-msg-id=abc-123-def;tmi-sent-ts=1642720582342 \
                         :tmi.twitch.tv CLEARMSG #dallas :HeyGuys");
        assert_eq!(clear.kind, ChatKind::Clearmsg);
        assert_eq!(clear.target.as_deref(), Some("abc-123-def"));
        assert_eq!(clear.text.as_deref(), Some("HeyGuys"));
        assert_eq!(clear.login.as_deref(), Some("ronni"));

        let room = msg(
            "@emote-only=0;followers-only=-1;r9k=0;room-id=12345678;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #bar",
        );
        assert_eq!(room.kind, ChatKind::Roomstate);
        assert_eq!(room.sent_at, at());
        assert_eq!(room.params.len(), 5);
        assert_eq!(room.params["followers-only"], "-1");
        assert!(room.id.starts_with("roomstate:1700000000000:"));
    }

    #[test]
    fn control_lines() {
        assert_eq!(event("PING :tmi.twitch.tv", at()), Ok(Event::Ping("tmi.twitch.tv".into())));
        assert_eq!(event(":tmi.twitch.tv RECONNECT", at()), Ok(Event::Reconnect));
        assert_eq!(
            event(":tmi.twitch.tv NOTICE * :Login authentication failed", at()),
            Ok(Event::LoginFailed("Login authentication failed".into()))
        );
        assert_eq!(
            event(":justinfan123!justinfan123@justinfan123.tmi.twitch.tv JOIN #dallas", at()),
            Ok(Event::Joined)
        );
        assert_eq!(
            event(":justinfan123.tmi.twitch.tv 366 justinfan123 #dallas :End of /NAMES list", at()),
            Ok(Event::Joined)
        );
        assert_eq!(event(":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands", at()), Ok(Event::Other));
        assert_eq!(
            event("@msg-id=slow_on :tmi.twitch.tv NOTICE #dallas :This room is in slow mode.", at()),
            Ok(Event::Other)
        );
        assert_eq!(event(":tmi.twitch.tv 001 justinfan123 :Welcome, GLHF!", at()), Ok(Event::Other));
    }
}
