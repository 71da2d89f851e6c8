//! A scripted fake of Twitch's chat server (IRC over WebSocket), for tests on
//! loopback: the real `wss://irc-ws.chat.twitch.tv` cannot be reached from
//! here, and a live channel's chat could not be scripted anyway. It follows
//! Twitch's public IRC references, <https://dev.twitch.tv/docs/chat/irc/> and
//! the tags reference <https://dev.twitch.tv/docs/chat/irc/#twitch-irc-capabilities>:
//!
//! - the anonymous login: `CAP REQ :twitch.tv/tags twitch.tv/commands`, an
//!   optional `PASS`, `NICK justinfan…`, `JOIN #channel`, in one WebSocket
//!   frame or several, answered with `CAP * ACK`, the 001–004/375/372/376
//!   welcome, the JOIN echo with its 353/366 names lines, and a `ROOMSTATE`;
//!   any other nick gets `NOTICE * :Login authentication failed`;
//! - `PRIVMSG` and `USERNOTICE` (`sub`, `resub`, `subgift`, `raid`,
//!   `announcement`) with the full tag set, `CLEARMSG`, `CLEARCHAT`,
//!   `ROOMSTATE`, `RECONNECT`, and `PING`/`PONG` both ways;
//! - tag values escaped as IRCv3 says (`\s`, `\:`, `\\`, `\r`, `\n`), emote
//!   ranges counted in code points, several lines batched in one frame.
//!
//! The test gives a [`Step`] script. The fake plays it to whichever client
//! has most recently logged in and joined; a step that cannot be written to
//! a live connection waits for the next login, so every scripted message is
//! delivered exactly once overall, and [`FakeChat::sent`] is the truth the
//! archive is checked against.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Twitch batches lines in a frame; during a burst, at most this many.
const MAX_LINES_PER_FRAME: usize = 100;

/// Emotes the fake recognises in message texts, as `(name, emote id)`.
const EMOTES: &[(&str, &str)] = &[("Kappa", "25"), ("LUL", "425618"), ("PogChamp", "305954156"), ("<3", "555555584")];

/// The raiders' lines in a [`Step::Burst`]; `{n}` makes each one unique.
const BURST_TEXTS: &[&str] = &[
    "PogChamp raid hype #{n}",
    "¡Hola desde el raid! 🎉 {n} Kappa",
    "ça fait plaisir 😂 LUL {n}",
    "первый раз здесь {n} <3",
    "{n} 日本語のテスト Kappa Kappa",
];

/// One thing the fake server does, in script order.
#[derive(Debug, Clone)]
pub enum Step {
    /// A `PRIVMSG` from `user` with the full tag set (emotes found in `text`).
    Say { user: &'static str, text: String },
    /// A `USERNOTICE`: `msg-id=sub` when `months` is 1 (or 0), else
    /// `msg-id=resub` carrying a message from the subscriber.
    Sub { user: &'static str, months: u32 },
    /// A `USERNOTICE` with `msg-id=subgift`: `user` gifts a Tier 1 sub to `recipient`.
    GiftSub { user: &'static str, recipient: &'static str },
    /// A `USERNOTICE` with `msg-id=raid`: `from` arrives with `viewers` viewers.
    Raid { from: &'static str, viewers: u32 },
    /// A `USERNOTICE` with `msg-id=announcement` from the moderator `user`.
    Announcement { user: &'static str, text: String },
    /// A raid's flood: `messages` `PRIVMSG`s from many users, paced at
    /// `per_second` (0: all at once), batched up to 100 lines a frame.
    Burst { messages: usize, per_second: u32 },
    /// A `CLEARMSG` targeting the last delivered `PRIVMSG`'s id.
    DeleteLast,
    /// A `CLEARCHAT` timing `user` out for `secs` (0: a permanent ban, without `ban-duration`).
    Timeout { user: &'static str, secs: u32 },
    /// A `ROOMSTATE` change setting slow mode to `slow` seconds.
    RoomState { slow: u32 },
    /// Close the TCP connection abruptly (a reset, no close frame), then
    /// pause until the client logs in and joins again.
    Drop,
    /// Send `:tmi.twitch.tv RECONNECT`, close the connection 1 s later (with
    /// a close frame), and pause until the client is back.
    Reconnect,
    /// Send nothing, not even the server's PINGs, for this long; the client's
    /// PINGs are still answered.
    Silence(Duration),
    /// Pause between steps; the server keeps PINGing.
    Wait(Duration),
    /// Send this text as one WebSocket frame exactly as given (add `\r\n`
    /// for a terminated line): hostile input. Not recorded in [`FakeChat::sent`].
    Malformed(String),
}

/// A chat message the script delivered to a live connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Its `id` tag (PRIVMSG, USERNOTICE); None for CLEARMSG, CLEARCHAT and ROOMSTATE.
    pub id: Option<String>,
    /// The IRC command: `PRIVMSG`, `USERNOTICE`, `CLEARMSG`, `CLEARCHAT`, `ROOMSTATE`.
    pub command: String,
    /// The message text: the PRIVMSG's, the resub's or announcement's message,
    /// the deleted message's for CLEARMSG; None when the line has none.
    pub text: Option<String>,
    /// The login it is from (for CLEARCHAT, the one timed out; for CLEARMSG,
    /// the deleted message's author; for a raid, the raider).
    pub user: Option<String>,
    /// Its `tmi-sent-ts` (the server's clock at send, in ms); ROOMSTATE has
    /// no such tag, so this is the time it was sent.
    pub at: DateTime<Utc>,
    /// `privmsg`, `sub`, `resub`, `subgift`, `raid`, `announcement`,
    /// `clearmsg`, `clearchat` or `roomstate`.
    pub kind: String,
}

/// The fake server's clocks and bounds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often the server sends `PING :tmi.twitch.tv` (outside a [`Step::Silence`]).
    pub ping_every: Duration,
    /// How long the script waits for a client to log in and join, at the
    /// start and after a drop; past it the script is abandoned, unfinished.
    pub client_wait: Duration,
    /// How long a new connection has to log in and join.
    pub login_deadline: Duration,
    /// How long one write may take before the connection counts as gone.
    pub write_deadline: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ping_every: Duration::from_secs(5),
            client_wait: Duration::from_secs(120),
            login_deadline: Duration::from_secs(10),
            write_deadline: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct Record {
    sent: Vec<Sent>,
    connections: usize,
    pongs: usize,
    finished: bool,
}

type Shared = Arc<Mutex<Record>>;

/// A running fake chat server. Dropping it stops the server and closes its connections.
pub struct FakeChat {
    addr: SocketAddr,
    record: Shared,
    _server: crate::Server,
}

impl FakeChat {
    /// Serve `script` for the channel `channel` (its login, without `#`) on a
    /// free loopback port, with the default [`Timing`] (a PING every 5 s).
    /// Panics on a script that cannot be played (a `DeleteLast` before any message).
    pub async fn start(channel: &str, script: Vec<Step>) -> FakeChat {
        FakeChat::start_with(channel, script, Timing::default()).await
    }

    /// [`FakeChat::start`] with other clocks and bounds.
    pub async fn start_with(channel: &str, script: Vec<Step>, timing: Timing) -> FakeChat {
        let channel = channel.trim_start_matches('#').to_ascii_lowercase();
        assert!(!channel.is_empty(), "FakeChat needs a channel login");
        check_script(&script);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Shared::default();
        let task = tokio::spawn(serve(listener, Room::new(channel), script, timing, record.clone()));
        FakeChat { addr, record, _server: crate::Server(task) }
    }

    /// The WebSocket address to connect to: `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Every chat message the script delivered, in order, each once.
    pub fn sent(&self) -> Vec<Sent> {
        self.record.lock().unwrap().sent.clone()
    }

    /// How many logins (an accepted `NICK`) the server has had so far.
    pub fn connections(&self) -> usize {
        self.record.lock().unwrap().connections
    }

    /// How many `PONG`s clients have sent (answers to the server's PINGs).
    pub fn pongs(&self) -> usize {
        self.record.lock().unwrap().pongs
    }

    /// Whether the script has run to its end (the server then idles, PINGing, until dropped).
    pub fn finished(&self) -> bool {
        self.record.lock().unwrap().finished
    }
}

fn check_script(script: &[Step]) {
    let mut any_privmsg = false;
    for step in script {
        match step {
            Step::Say { .. } => any_privmsg = true,
            Step::Burst { messages, .. } => any_privmsg |= *messages > 0,
            Step::DeleteLast => assert!(any_privmsg, "Step::DeleteLast needs an earlier Say or Burst"),
            _ => {}
        }
    }
}

async fn serve(listener: TcpListener, room: Room, script: Vec<Step>, timing: Timing, record: Shared) {
    let (joined_tx, joined) = mpsc::channel(8);
    let accept = {
        let (channel, room_id, record) = (room.channel.clone(), room.room_id, record.clone());
        async move {
            // Owned here so that aborting the server aborts the logins in progress.
            let mut logins = JoinSet::new();
            let mut serial = 0;
            loop {
                while logins.try_join_next().is_some() {}
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        serial += 1;
                        let (channel, record, joined) = (channel.clone(), record.clone(), joined_tx.clone());
                        let task = login(tcp, serial, channel, room_id, timing, record, joined);
                        logins.spawn(task);
                    }
                    Err(_) => sleep(Duration::from_millis(50)).await,
                }
            }
        }
    };
    let runner = Runner { room, timing, record, joined, current: None };
    tokio::join!(accept, runner.run(script));
}

/// A connection that has logged in and joined the channel.
struct Session {
    ws: WebSocketStream<TcpStream>,
    /// Which connection this is, in accept order.
    serial: u64,
    /// Whether the client asked for `twitch.tv/tags`; without it lines go out untagged.
    tags: bool,
    next_ping: Instant,
}

/// Takes one connection through the login; hands it to the script once it has joined.
async fn login(
    tcp: TcpStream,
    serial: u64,
    channel: String,
    room_id: u64,
    timing: Timing,
    record: Shared,
    joined: mpsc::Sender<Session>,
) {
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let mut ws = tokio_tungstenite::accept_async(tcp).await.ok()?;
        let (mut tags, mut nick) = (false, None::<String>);
        while let Some(frame) = ws.next().await {
            let text = match frame.ok()? {
                Message::Text(text) => text.to_string(),
                Message::Close(_) => return None,
                _ => continue,
            };
            // Each group of answers goes out as its own frame, as Twitch does.
            let mut frames = Vec::new();
            for line in irc_lines(&text) {
                let (command, params) = parse_line(line);
                match (command.as_str(), nick.as_deref()) {
                    ("CAP", _) if params.first() == Some(&"REQ") => {
                        let wanted = params.last().copied().unwrap_or_default();
                        let known = ["twitch.tv/tags", "twitch.tv/commands", "twitch.tv/membership"];
                        let verdict = if wanted.split(' ').all(|cap| known.contains(&cap)) { "ACK" } else { "NAK" };
                        tags |= verdict == "ACK" && wanted.split(' ').any(|cap| cap == "twitch.tv/tags");
                        frames.push(format!(":tmi.twitch.tv CAP * {verdict} :{wanted}\r\n"));
                    }
                    ("NICK", None) => {
                        let name = params.first().copied().unwrap_or_default().to_ascii_lowercase();
                        if !name.starts_with("justinfan") {
                            let refusal = ":tmi.twitch.tv NOTICE * :Login authentication failed\r\n";
                            let _ = ws.send(Message::text(refusal)).await;
                            let _ = ws.close(None).await;
                            return None;
                        }
                        record.lock().unwrap().connections += 1;
                        frames.push(welcome(&name));
                        nick = Some(name);
                    }
                    ("JOIN", Some(name))
                        if params.first().is_some_and(|c| c.eq_ignore_ascii_case(&format!("#{channel}"))) =>
                    {
                        frames.push(format!(
                            ":{name}!{name}@{name}.tmi.twitch.tv JOIN #{channel}\r\n\
                             :{name}.tmi.twitch.tv 353 {name} = #{channel} :{name}\r\n\
                             :{name}.tmi.twitch.tv 366 {name} #{channel} :End of /NAMES list\r\n"
                        ));
                        frames.push(format!(
                            "@emote-only=0;followers-only=-1;r9k=0;room-id={room_id};slow=0;subs-only=0 \
                             :tmi.twitch.tv ROOMSTATE #{channel}\r\n"
                        ));
                        for frame in frames {
                            let frame = if tags { frame } else { without_tags(&frame) };
                            ws.send(Message::text(frame)).await.ok()?;
                        }
                        let next_ping = Instant::now() + timing.ping_every;
                        return Some(Session { ws, serial, tags, next_ping });
                    }
                    ("PING", _) => frames.push(pong(params.last().copied().unwrap_or("tmi.twitch.tv"))),
                    // PASS is not checked for justinfan logins; the rest is ignored before JOIN.
                    _ => {}
                }
            }
            for frame in frames {
                ws.send(Message::text(frame)).await.ok()?;
            }
        }
        None
    };
    if let Ok(Some(session)) = timeout(timing.login_deadline, handshake).await {
        let _ = timeout(timing.login_deadline, joined.send(session)).await;
    }
}

fn welcome(nick: &str) -> String {
    [
        ("001", "Welcome, GLHF!"),
        ("002", "Your host is tmi.twitch.tv"),
        ("003", "This server is rather new"),
        ("004", "-"),
        ("375", "-"),
        ("372", "You are in a maze of twisty passages, all alike."),
        ("376", ">"),
    ]
    .iter()
    .map(|(code, text)| format!(":tmi.twitch.tv {code} {nick} :{text}\r\n"))
    .collect()
}

fn pong(arg: &str) -> String {
    format!(":tmi.twitch.tv PONG tmi.twitch.tv :{arg}\r\n")
}

/// The lines of one frame, without their `\r\n`.
fn irc_lines(frame: &str) -> impl Iterator<Item = &str> {
    frame.split('\n').map(|line| line.trim_end_matches('\r')).filter(|line| !line.is_empty())
}

/// A line's command (upper case) and parameters, the trailing one last; tags and prefix skipped.
fn parse_line(line: &str) -> (String, Vec<&str>) {
    let mut rest = line;
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    if rest.starts_with(':') {
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    let (middle, trailing) = match rest.split_once(" :") {
        Some((middle, trailing)) => (middle, Some(trailing)),
        None => (rest, None),
    };
    let mut words = middle.split(' ').filter(|w| !w.is_empty());
    let command = words.next().unwrap_or_default().to_ascii_uppercase();
    let mut params: Vec<&str> = words.collect();
    params.extend(trailing);
    (command, params)
}

/// The frame as a client that did not ask for `twitch.tv/tags` sees it.
fn without_tags(frame: &str) -> String {
    frame
        .split_inclusive('\n')
        .map(|line| if line.starts_with('@') { line.split_once(' ').map_or("", |(_, r)| r) } else { line })
        .collect()
}

/// What one step writes: a frame's text and the messages it carries.
struct Batch {
    text: String,
    sent: Vec<Sent>,
    /// How many of them are raid-burst lines.
    burst_lines: usize,
}

/// Plays the script on the most recently joined connection.
struct Runner {
    room: Room,
    timing: Timing,
    record: Shared,
    joined: mpsc::Receiver<Session>,
    current: Option<Session>,
}

enum Incoming {
    Text(String),
    Gone,
}

impl Runner {
    async fn run(mut self, script: Vec<Step>) {
        for step in &script {
            if !self.play(step).await {
                return;
            }
        }
        self.record.lock().unwrap().finished = true;
        // Keep the client's connection open and PINGed, as a quiet channel would, until dropped.
        loop {
            self.serve_until(Instant::now() + Duration::from_secs(60), true).await;
        }
    }

    /// Plays one step to its end; false when no client came back in time.
    async fn play(&mut self, step: &Step) -> bool {
        let mut burst_progress = 0;
        loop {
            if self.current.is_none() && !self.await_client().await {
                return false;
            }
            let delivered = match step {
                Step::Wait(pause) => {
                    self.serve_until(Instant::now() + *pause, true).await;
                    true
                }
                Step::Silence(pause) => {
                    self.serve_until(Instant::now() + *pause, false).await;
                    true
                }
                Step::Drop => {
                    self.drain().await;
                    if let Some(session) = self.current.take() {
                        // A zero linger makes the close a reset: no close frame, no FIN handshake.
                        let _ = session.ws.get_ref().set_zero_linger();
                    }
                    return self.await_client().await;
                }
                Step::Reconnect => {
                    self.drain().await;
                    if self.write(":tmi.twitch.tv RECONNECT\r\n".to_string()).await {
                        let old = self.current.as_ref().map(|s| s.serial);
                        self.serve_until(Instant::now() + Duration::from_secs(1), true).await;
                        // A client that reconnected within the second already has a new session.
                        if old.is_some() && self.current.as_ref().map(|s| s.serial) == old {
                            self.close_current().await;
                        }
                    }
                    return self.current.is_some() || self.await_client().await;
                }
                Step::Burst { messages, per_second } => self.burst(*messages, *per_second, &mut burst_progress).await,
                message => {
                    self.drain().await;
                    if self.current.is_none() {
                        continue;
                    }
                    let batch = self.room.render(message, now_ms());
                    self.send_batch(batch).await
                }
            };
            if delivered {
                return true;
            }
        }
    }

    /// Sends `messages` raid lines from `*progress` on; false if the connection went first.
    async fn burst(&mut self, messages: usize, per_second: u32, progress: &mut usize) -> bool {
        let (start, first) = (Instant::now(), *progress);
        while *progress < messages {
            let due = if per_second == 0 {
                start
            } else {
                start + Duration::from_secs_f64((*progress - first) as f64 / f64::from(per_second))
            };
            self.serve_until(due, true).await;
            if self.current.is_none() {
                return false;
            }
            let left = messages - *progress;
            let ready = if per_second == 0 {
                left
            } else {
                let elapsed = start.elapsed().as_secs_f64();
                ((elapsed * f64::from(per_second)).floor() as usize + 1).saturating_sub(*progress - first)
            };
            let count = ready.clamp(1, left).min(MAX_LINES_PER_FRAME);
            let batch = self.room.burst(count, now_ms());
            if !self.send_batch(batch).await {
                return false;
            }
            *progress += count;
        }
        true
    }

    async fn send_batch(&mut self, mut batch: Batch) -> bool {
        if !self.write(std::mem::take(&mut batch.text)).await {
            return false;
        }
        self.room.delivered(&batch);
        self.record.lock().unwrap().sent.extend(batch.sent);
        true
    }

    /// Writes one frame to the current connection; a failure forgets the connection.
    async fn write(&mut self, text: String) -> bool {
        let Some(session) = self.current.as_mut() else { return false };
        let text = if session.tags { text } else { without_tags(&text) };
        let written = timeout(self.timing.write_deadline, session.ws.send(Message::text(text))).await;
        let ok = matches!(written, Ok(Ok(())));
        if !ok {
            self.current = None;
        }
        ok
    }

    async fn close_current(&mut self) {
        if let Some(mut session) = self.current.take() {
            let _ = timeout(self.timing.write_deadline, session.ws.close(None)).await;
        }
    }

    /// Waits up to `client_wait` for a client to log in and join.
    async fn await_client(&mut self) -> bool {
        if self.current.is_some() {
            return true;
        }
        match timeout(self.timing.client_wait, self.joined.recv()).await {
            Ok(Some(session)) => {
                self.current = Some(session);
                true
            }
            _ => false,
        }
    }

    /// Handles whatever has already arrived (the client may have gone) before a write.
    async fn drain(&mut self) {
        self.serve_until(Instant::now(), true).await;
    }

    /// Until `deadline`: answer the client, notice it leaving, take a newer
    /// login over, and (if `pings`) PING it on schedule.
    async fn serve_until(&mut self, deadline: Instant, pings: bool) {
        loop {
            let ping_due = self.current.as_ref().filter(|_| pings).map(|s| s.next_ping);
            tokio::select! {
                biased;
                incoming = next_text(&mut self.current) => match incoming {
                    Incoming::Text(text) => self.answer(&text).await,
                    Incoming::Gone => self.current = None,
                },
                Some(session) = self.joined.recv() => self.current = Some(session),
                _ = sleep_until(ping_due.unwrap_or(deadline)), if ping_due.is_some() => {
                    if let Some(session) = self.current.as_mut() {
                        session.next_ping = Instant::now() + self.timing.ping_every;
                    }
                    self.write("PING :tmi.twitch.tv\r\n".to_string()).await;
                }
                _ = sleep_until(deadline) => return,
            }
        }
    }

    async fn answer(&mut self, text: &str) {
        for line in irc_lines(text) {
            let (command, params) = parse_line(line);
            match command.as_str() {
                "PING" => {
                    self.write(pong(params.last().copied().unwrap_or("tmi.twitch.tv"))).await;
                }
                "PONG" => self.record.lock().unwrap().pongs += 1,
                _ => {}
            }
        }
    }
}

/// The next text frame from the connection; pending forever without one.
async fn next_text(current: &mut Option<Session>) -> Incoming {
    let Some(session) = current.as_mut() else { return std::future::pending().await };
    loop {
        match session.ws.next().await {
            Some(Ok(Message::Text(text))) => return Incoming::Text(text.to_string()),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Incoming::Gone,
            Some(Ok(_)) => continue,
        }
    }
}

/// `Utc::now()` to the millisecond, so that a [`Sent::at`] equals its `tmi-sent-ts`.
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

/// The channel and what it has seen: renders steps into Twitch-shaped lines.
struct Room {
    channel: String,
    room_id: u64,
    /// Users who have spoken (their next PRIVMSG is not `first-msg=1`).
    spoke: HashSet<String>,
    /// The last delivered PRIVMSG: (id, login, text).
    last_privmsg: Option<(String, String, String)>,
    /// Raid lines delivered so far, numbering the next ones.
    burst_lines: usize,
}

/// How a user looks in tags, derived from the login so that it is stable.
struct Chatter {
    login: String,
    display: String,
    user_id: u64,
    color: &'static str,
    badge_info: &'static str,
    badges: &'static str,
    moderator: bool,
    subscriber: bool,
}

impl Chatter {
    fn of(login: &str) -> Chatter {
        let login = login.to_ascii_lowercase();
        let hash = fnv(&login);
        let (badge_info, badges, moderator, subscriber) = match hash % 4 {
            0 => ("subscriber/14", "subscriber/12,premium/1", false, true),
            1 => ("subscriber/6", "moderator/1,subscriber/6", true, true),
            2 => ("", "", false, false),
            _ => ("", "premium/1", false, false),
        };
        let color = ["#1E90FF", "#FF4500", "#9ACD32", ""][(hash / 4 % 4) as usize];
        let mut chars = login.chars();
        let display = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
        Chatter {
            user_id: 10_000_000 + hash % 900_000_000,
            login,
            display,
            color,
            badge_info,
            badges,
            moderator,
            subscriber,
        }
    }

    /// The tags every PRIVMSG and USERNOTICE from this user carries.
    fn tags(&self, room_id: u64, id: &str, at: DateTime<Utc>) -> BTreeMap<&'static str, String> {
        let flag = |on: bool| if on { "1" } else { "0" }.to_string();
        BTreeMap::from([
            ("badge-info", self.badge_info.to_string()),
            ("badges", self.badges.to_string()),
            ("color", self.color.to_string()),
            ("display-name", self.display.clone()),
            ("emotes", String::new()),
            ("flags", String::new()),
            ("id", id.to_string()),
            ("mod", flag(self.moderator)),
            ("room-id", room_id.to_string()),
            ("subscriber", flag(self.subscriber)),
            ("tmi-sent-ts", at.timestamp_millis().to_string()),
            ("turbo", "0".to_string()),
            ("user-id", self.user_id.to_string()),
            ("user-type", if self.moderator { "mod" } else { "" }.to_string()),
        ])
    }
}

impl Room {
    fn new(channel: String) -> Room {
        let room_id = 100_000 + fnv(&channel) % 900_000_000;
        Room { channel, room_id, spoke: HashSet::new(), last_privmsg: None, burst_lines: 0 }
    }

    fn delivered(&mut self, batch: &Batch) {
        for message in batch.sent.iter().filter(|m| m.kind == "privmsg") {
            let (id, user, text) = (message.id.clone(), message.user.clone(), message.text.clone());
            self.spoke.insert(user.clone().unwrap_or_default());
            self.last_privmsg = Some((id.unwrap_or_default(), user.unwrap_or_default(), text.unwrap_or_default()));
        }
        self.burst_lines += batch.burst_lines;
    }

    fn render(&self, step: &Step, at: DateTime<Utc>) -> Batch {
        let (line, sent) = match step {
            Step::Say { user, text } => self.privmsg(user, text, at),
            Step::Sub { user, months } => self.sub(user, *months, at),
            Step::GiftSub { user, recipient } => self.gift(user, recipient, at),
            Step::Raid { from, viewers } => self.raid(from, *viewers, at),
            Step::Announcement { user, text } => self.announcement(user, text, at),
            Step::DeleteLast => self.clearmsg(at),
            Step::Timeout { user, secs } => self.clearchat(user, *secs, at),
            Step::RoomState { slow } => self.roomstate(*slow, at),
            Step::Malformed(raw) => return Batch { text: raw.clone(), sent: Vec::new(), burst_lines: 0 },
            Step::Burst { .. } | Step::Drop | Step::Reconnect | Step::Silence(_) | Step::Wait(_) => {
                unreachable!("{step:?} is played, not rendered")
            }
        };
        Batch { text: line, sent: sent.into_iter().collect(), burst_lines: 0 }
    }

    /// The next `count` raid lines, in one frame.
    fn burst(&self, count: usize, at: DateTime<Utc>) -> Batch {
        let mut batch = Batch { text: String::new(), sent: Vec::new(), burst_lines: count };
        for n in self.burst_lines..self.burst_lines + count {
            let user = format!("raider_{}", n % 250);
            let text = BURST_TEXTS[n % BURST_TEXTS.len()].replace("{n}", &n.to_string());
            let (line, sent) = self.privmsg(&user, &text, at);
            batch.text.push_str(&line);
            batch.sent.extend(sent);
        }
        batch
    }

    fn privmsg(&self, user: &str, text: &str, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let chatter = Chatter::of(user);
        let text = text.replace(['\r', '\n'], " ");
        let id = uuid::Uuid::new_v4().to_string();
        let mut tags = chatter.tags(self.room_id, &id, at);
        tags.insert("emotes", emote_ranges(&text));
        tags.insert("first-msg", if self.spoke.contains(&chatter.login) { "0" } else { "1" }.to_string());
        tags.insert("returning-chatter", "0".to_string());
        let source = format!("{0}!{0}@{0}.tmi.twitch.tv", chatter.login);
        let line = self.line(&tags, &source, "PRIVMSG", Some(&text));
        (line, Some(sent(Some(id), "PRIVMSG", Some(text), Some(chatter.login), at, "privmsg")))
    }

    /// A USERNOTICE from `chatter` with `msg-id`, the `msg-param-*` tags and `system-msg`.
    fn usernotice(
        &self,
        chatter: &Chatter,
        kind: &'static str,
        params: &[(&'static str, String)],
        system: &str,
        text: Option<&str>,
        at: DateTime<Utc>,
    ) -> (String, Option<Sent>) {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tags = chatter.tags(self.room_id, &id, at);
        tags.insert("login", chatter.login.clone());
        tags.insert("msg-id", kind.to_string());
        tags.insert("system-msg", system.to_string());
        tags.insert("vip", "0".to_string());
        if let Some(text) = text {
            tags.insert("emotes", emote_ranges(text));
        }
        tags.extend(params.iter().cloned());
        let line = self.line(&tags, "tmi.twitch.tv", "USERNOTICE", text);
        let text = text.map(str::to_string);
        (line, Some(sent(Some(id), "USERNOTICE", text, Some(chatter.login.clone()), at, kind)))
    }

    fn sub(&self, user: &str, months: u32, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let chatter = Chatter::of(user);
        let months = months.max(1);
        let mut params = vec![
            ("msg-param-cumulative-months", months.to_string()),
            ("msg-param-months", "0".to_string()),
            ("msg-param-multimonth-duration", "1".to_string()),
            ("msg-param-multimonth-tenure", "0".to_string()),
            ("msg-param-should-share-streak", "0".to_string()),
            ("msg-param-sub-plan", "1000".to_string()),
            ("msg-param-sub-plan-name", format!("Channel Subscription ({})", self.channel)),
            ("msg-param-was-gifted", "false".to_string()),
        ];
        let subscribed = format!("{} subscribed at Tier 1.", chatter.display);
        if months == 1 {
            return self.usernotice(&chatter, "sub", &params, &subscribed, None, at);
        }
        params.push(("msg-param-streak-months", months.to_string()));
        let system = format!("{subscribed} They've subscribed for {months} months!");
        let text = format!("{months} mois déjà ! Kappa 💜 merci");
        self.usernotice(&chatter, "resub", &params, &system, Some(&text), at)
    }

    fn gift(&self, user: &str, recipient: &str, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let (chatter, to) = (Chatter::of(user), Chatter::of(recipient));
        let params = [
            ("msg-param-gift-months", "1".to_string()),
            ("msg-param-months", "1".to_string()),
            ("msg-param-origin-id", format!("{:x}", fnv(&format!("{user}>{recipient}")))),
            ("msg-param-recipient-display-name", to.display.clone()),
            ("msg-param-recipient-id", to.user_id.to_string()),
            ("msg-param-recipient-user-name", to.login.clone()),
            ("msg-param-sender-count", "0".to_string()),
            ("msg-param-sub-plan", "1000".to_string()),
            ("msg-param-sub-plan-name", format!("Channel Subscription ({})", self.channel)),
        ];
        let system = format!("{} gifted a Tier 1 sub to {}!", chatter.display, to.display);
        self.usernotice(&chatter, "subgift", &params, &system, None, at)
    }

    fn raid(&self, from: &str, viewers: u32, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let chatter = Chatter::of(from);
        let image = format!(
            "https://static-cdn.jtvnw.net/jtv_user_pictures/{}-profile_image-%s.png",
            uuid::Uuid::from_u128(u128::from(chatter.user_id))
        );
        let params = [
            ("msg-param-displayName", chatter.display.clone()),
            ("msg-param-login", chatter.login.clone()),
            ("msg-param-profileImageURL", image),
            ("msg-param-viewerCount", viewers.to_string()),
        ];
        let system = format!("{viewers} raiders from {} have joined!", chatter.display);
        self.usernotice(&chatter, "raid", &params, &system, None, at)
    }

    fn announcement(&self, user: &str, text: &str, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let chatter = Chatter::of(user);
        let params = [("msg-param-color", "PRIMARY".to_string())];
        let text = text.replace(['\r', '\n'], " ");
        self.usernotice(&chatter, "announcement", &params, "", Some(&text), at)
    }

    fn clearmsg(&self, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let Some((id, login, text)) = &self.last_privmsg else {
            unreachable!("check_script puts a PRIVMSG before every DeleteLast")
        };
        let tags = BTreeMap::from([
            ("login", login.clone()),
            ("room-id", String::new()),
            ("target-msg-id", id.clone()),
            ("tmi-sent-ts", at.timestamp_millis().to_string()),
        ]);
        let line = self.line(&tags, "tmi.twitch.tv", "CLEARMSG", Some(text));
        (line, Some(sent(None, "CLEARMSG", Some(text.clone()), Some(login.clone()), at, "clearmsg")))
    }

    fn clearchat(&self, user: &str, secs: u32, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let chatter = Chatter::of(user);
        let mut tags = BTreeMap::from([
            ("room-id", self.room_id.to_string()),
            ("target-user-id", chatter.user_id.to_string()),
            ("tmi-sent-ts", at.timestamp_millis().to_string()),
        ]);
        if secs > 0 {
            tags.insert("ban-duration", secs.to_string());
        }
        let line = self.line(&tags, "tmi.twitch.tv", "CLEARCHAT", Some(&chatter.login));
        (line, Some(sent(None, "CLEARCHAT", None, Some(chatter.login), at, "clearchat")))
    }

    /// A change of room state carries only what changed, as Twitch sends it.
    fn roomstate(&self, slow: u32, at: DateTime<Utc>) -> (String, Option<Sent>) {
        let tags = BTreeMap::from([("room-id", self.room_id.to_string()), ("slow", slow.to_string())]);
        let line = self.line(&tags, "tmi.twitch.tv", "ROOMSTATE", None);
        (line, Some(sent(None, "ROOMSTATE", None, None, at, "roomstate")))
    }

    /// `@tags :source COMMAND #channel[ :text]\r\n`, tag values escaped.
    fn line(&self, tags: &BTreeMap<&str, String>, source: &str, command: &str, text: Option<&str>) -> String {
        let tags: Vec<String> = tags.iter().map(|(key, value)| format!("{key}={}", escape_tag(value))).collect();
        let trailing = text.map(|t| format!(" :{t}")).unwrap_or_default();
        format!("@{} :{source} {command} #{}{trailing}\r\n", tags.join(";"), self.channel)
    }
}

fn sent(
    id: Option<String>,
    command: &str,
    text: Option<String>,
    user: Option<String>,
    at: DateTime<Utc>,
    kind: &str,
) -> Sent {
    Sent { id, command: command.to_string(), text, user, at, kind: kind.to_string() }
}

/// IRCv3 tag-value escaping.
fn escape_tag(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ';' => escaped.push_str("\\:"),
            ' ' => escaped.push_str("\\s"),
            '\\' => escaped.push_str("\\\\"),
            '\r' => escaped.push_str("\\r"),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Twitch's `emotes` tag: `id:start-end,…/id:…`, positions in code points, ends inclusive.
fn emote_ranges(text: &str) -> String {
    let mut found: Vec<(&str, Vec<String>)> = Vec::new();
    let mut at = 0;
    for word in text.split(' ') {
        let length = word.chars().count();
        if let Some((_, id)) = EMOTES.iter().find(|(name, _)| *name == word) {
            let range = format!("{at}-{}", at + length - 1);
            match found.iter_mut().find(|(seen, _)| seen == id) {
                Some((_, ranges)) => ranges.push(range),
                None => found.push((id, vec![range])),
            }
        }
        at += length + 1;
    }
    found.iter().map(|(id, ranges)| format!("{id}:{}", ranges.join(","))).collect::<Vec<_>>().join("/")
}

/// FNV-1a: stable ids and looks from names.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::MaybeTlsStream;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const CHANNEL: &str = "colonytest";
    const HANDSHAKE: [&str; 4] =
        ["CAP REQ :twitch.tv/tags twitch.tv/commands", "PASS SCHMOOPIIE", "NICK justinfan12345", "JOIN #colonytest"];

    fn quick() -> Timing {
        Timing { ping_every: Duration::from_millis(200), client_wait: Duration::from_secs(10), ..Timing::default() }
    }

    /// Logs in, the handshake in one frame or one frame a line.
    async fn log_in(url: &str, one_frame: bool) -> Client {
        let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        if one_frame {
            client.send(Message::text(HANDSHAKE.map(|l| format!("{l}\r\n")).concat())).await.unwrap();
        } else {
            for line in HANDSHAKE {
                client.send(Message::text(format!("{line}\r\n"))).await.unwrap();
            }
        }
        client
    }

    /// How a client saw one connection: its frames, and how it ended.
    #[derive(Default)]
    struct Seen {
        frames: Vec<String>,
        close_frame: bool,
        ended: bool,
    }

    impl Seen {
        fn lines(&self) -> Vec<&str> {
            self.frames.iter().flat_map(|f| irc_lines(f)).collect()
        }
    }

    /// Reads (answering PINGs) until `done` says so or the connection ends; 10 s at most.
    async fn read(client: &mut Client, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(seen) {
            let frame = timeout(deadline - Instant::now(), client.next()).await.expect("fake chat went quiet");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    if text.starts_with("PING") {
                        client.send(Message::text("PONG :tmi.twitch.tv\r\n")).await.unwrap();
                    }
                    seen.frames.push(text.to_string());
                }
                Some(Ok(Message::Close(_))) => seen.close_frame = true,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    seen.ended = true;
                    return;
                }
            }
        }
    }

    /// A line's tags, unescaped.
    fn tags(line: &str) -> BTreeMap<String, String> {
        let raw = line.strip_prefix('@').and_then(|l| l.split_once(' ')).map_or("", |(tags, _)| tags);
        raw.split(';')
            .filter_map(|tag| tag.split_once('='))
            .map(|(key, value)| {
                let mut out = String::new();
                let mut chars = value.chars();
                while let Some(c) = chars.next() {
                    match (c, c == '\\') {
                        (_, true) => match chars.next() {
                            Some('s') => out.push(' '),
                            Some(':') => out.push(';'),
                            Some('r') => out.push('\r'),
                            Some('n') => out.push('\n'),
                            Some(other) => out.push(other),
                            None => {}
                        },
                        (c, false) => out.push(c),
                    }
                }
                (key.to_string(), out)
            })
            .collect()
    }

    fn find<'a>(lines: &[&'a str], command: &str) -> Vec<&'a str> {
        lines.iter().copied().filter(|l| parse_line(l).0 == command).collect()
    }

    async fn finished(chat: &FakeChat) {
        crate::eventually("the script to finish", Duration::from_secs(10), || async { chat.finished().then_some(()) })
            .await;
    }

    /// The brief's script: a message, a resub, an abrupt drop, a raid on the
    /// second connection, and a malformed line; all as Twitch shapes them.
    #[tokio::test]
    async fn chat_plays_its_script_across_a_drop() {
        let script = vec![
            Step::Say { user: "viewer1", text: "hello 👋 ça va Kappa".into() },
            Step::Wait(Duration::from_millis(500)),
            Step::Sub { user: "viewer2", months: 3 },
            Step::Drop,
            Step::Raid { from: "raider", viewers: 42 },
            Step::Malformed("@bad=\\;tags :nobody PRIVMSG\r\nnot irc at all ☃".into()),
        ];
        let chat = FakeChat::start_with(CHANNEL, script, quick()).await;

        let mut first = Seen::default();
        let mut client = log_in(&chat.url(), true).await;
        read(&mut client, &mut first, |_| false).await;
        assert!(first.ended && !first.close_frame, "a Drop is a reset without a close frame");
        let lines = first.lines();
        assert_eq!(lines[0], ":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands");
        for code in ["001", "002", "003", "004", "375", "372", "376"] {
            assert!(
                lines.contains(&format!(":tmi.twitch.tv {code} justinfan12345 :").as_str())
                    || lines.iter().any(|l| l.starts_with(&format!(":tmi.twitch.tv {code} justinfan12345 :")))
            );
        }
        let join = lines
            .iter()
            .position(|l| *l == ":justinfan12345!justinfan12345@justinfan12345.tmi.twitch.tv JOIN #colonytest");
        let names = lines.iter().position(|l| l.contains(" 366 justinfan12345 #colonytest :End of /NAMES list"));
        let state = lines.iter().position(|l| l.contains("ROOMSTATE #colonytest") && l.contains("slow=0"));
        let said = lines.iter().position(|l| l.contains("PRIVMSG"));
        assert!(join < names && names < state && state < said, "JOIN, names, ROOMSTATE, then the script: {lines:#?}");
        assert!(find(&lines, "PING").iter().all(|l| *l == "PING :tmi.twitch.tv") && !find(&lines, "PING").is_empty());

        let mut second = Seen::default();
        let mut client = log_in(&chat.url(), false).await;
        read(&mut client, &mut second, |seen| seen.frames.iter().any(|f| f.contains("not irc at all"))).await;
        finished(&chat).await;

        let sent = chat.sent();
        let kinds: Vec<&str> = sent.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["privmsg", "resub", "raid"]);
        let ids: HashSet<_> = sent.iter().map(|s| s.id.clone().unwrap()).collect();
        assert_eq!(ids.len(), 3, "ids are unique");
        assert_eq!(chat.connections(), 2);
        assert!(chat.pongs() >= 1, "the client's PONGs are counted");

        let privmsg = find(&lines, "PRIVMSG")[0];
        let privmsg_tags = tags(privmsg);
        assert!(privmsg.contains(" :viewer1!viewer1@viewer1.tmi.twitch.tv PRIVMSG #colonytest :hello 👋 ça va Kappa"));
        assert_eq!(privmsg_tags["emotes"], "25:14-18", "emote ranges count code points");
        let emote: String = "hello 👋 ça va Kappa".chars().skip(14).take(5).collect();
        assert_eq!(emote, "Kappa");
        for tag in [
            "badge-info",
            "badges",
            "color",
            "display-name",
            "first-msg",
            "flags",
            "mod",
            "returning-chatter",
            "room-id",
            "subscriber",
            "turbo",
            "user-id",
            "user-type",
        ] {
            assert!(privmsg_tags.contains_key(tag), "PRIVMSG lacks {tag}");
        }
        assert_eq!(privmsg_tags["id"], sent[0].id.clone().unwrap());
        assert_eq!(privmsg_tags["tmi-sent-ts"], sent[0].at.timestamp_millis().to_string());
        assert_eq!(sent[0].text.as_deref(), Some("hello 👋 ça va Kappa"));

        let resub = find(&lines, "USERNOTICE")[0];
        assert!(
            resub.contains(
                "system-msg=Viewer2\\ssubscribed\\sat\\sTier\\s1.\\sThey've\\ssubscribed\\sfor\\s3\\smonths!;"
            )
        );
        let resub_tags = tags(resub);
        assert_eq!(resub_tags["msg-id"], "resub");
        assert_eq!(resub_tags["msg-param-cumulative-months"], "3");
        assert_eq!(resub_tags["msg-param-sub-plan"], "1000");
        assert_eq!(resub_tags["id"], sent[1].id.clone().unwrap());
        assert_eq!(parse_line(resub).1.last().copied(), sent[1].text.as_deref());

        let later = second.lines();
        let raid = find(&later, "USERNOTICE");
        assert_eq!(raid.len(), 1, "the raid comes once, on the new connection");
        let raid_tags = tags(raid[0]);
        assert_eq!(raid_tags["msg-id"], "raid");
        assert_eq!(raid_tags["msg-param-viewerCount"], "42");
        assert_eq!(raid_tags["msg-param-displayName"], "Raider");
        assert_eq!(raid_tags["system-msg"], "42 raiders from Raider have joined!");
        assert_eq!(raid_tags["tmi-sent-ts"], sent[2].at.timestamp_millis().to_string());
        assert!(second.frames.contains(&"@bad=\\;tags :nobody PRIVMSG\r\nnot irc at all ☃".to_string()));
    }

    /// A flood batched many lines a frame, the moderation lines, and a RECONNECT.
    #[tokio::test]
    async fn chat_floods_moderates_and_asks_to_reconnect() {
        let script = vec![
            Step::Burst { messages: 300, per_second: 1000 },
            Step::DeleteLast,
            Step::Timeout { user: "raider_7", secs: 600 },
            Step::RoomState { slow: 10 },
            Step::GiftSub { user: "generous", recipient: "lucky" },
            Step::Announcement { user: "modo", text: "règles; lisez-les \\o/".into() },
            Step::Reconnect,
            Step::Say { user: "viewer1", text: "back again".into() },
        ];
        let chat = FakeChat::start_with(CHANNEL, script, quick()).await;
        let started = Instant::now();
        let mut first = Seen::default();
        let mut client = log_in(&chat.url(), true).await;
        read(&mut client, &mut first, |_| false).await;
        assert!(first.close_frame, "after RECONNECT the server closes cleanly");
        let mut second = Seen::default();
        let mut client = log_in(&chat.url(), true).await;
        read(&mut client, &mut second, |seen| seen.lines().iter().any(|l| l.ends_with(":back again"))).await;
        finished(&chat).await;

        let lines = first.lines();
        let privmsgs = find(&lines, "PRIVMSG");
        assert_eq!(privmsgs.len(), 300);
        assert!(started.elapsed() >= Duration::from_millis(250), "the burst is paced");
        assert!(
            first.frames.iter().any(|f| find(&irc_lines(f).collect::<Vec<_>>(), "PRIVMSG").len() > 1),
            "lines are batched"
        );
        let last_id = tags(privmsgs[299])["id"].clone();
        assert_eq!(tags(find(&lines, "CLEARMSG")[0])["target-msg-id"], last_id);
        let clearchat = find(&lines, "CLEARCHAT")[0];
        assert_eq!(tags(clearchat)["ban-duration"], "600");
        assert!(clearchat.ends_with("CLEARCHAT #colonytest :raider_7"));
        assert!(find(&lines, "ROOMSTATE").last().unwrap().contains("slow=10"));
        let notices = find(&lines, "USERNOTICE");
        let gift = tags(notices[0]);
        assert_eq!(gift["msg-id"], "subgift");
        assert_eq!(gift["msg-param-recipient-user-name"], "lucky");
        assert_eq!(gift["system-msg"], "Generous gifted a Tier 1 sub to Lucky!");
        assert!(notices[1].contains("msg-id=announcement;msg-param-color=PRIMARY;"));
        assert!(notices[1].ends_with("USERNOTICE #colonytest :règles; lisez-les \\o/"));
        let last = lines.iter().rev().find(|l| !l.starts_with("PING"));
        assert_eq!(last, Some(&":tmi.twitch.tv RECONNECT"), "RECONNECT, then only PINGs until the close");

        let sent = chat.sent();
        assert_eq!(sent.len(), 300 + 6);
        let ids: HashSet<_> = sent.iter().filter_map(|s| s.id.clone()).collect();
        assert_eq!(ids.len(), 300 + 3, "every PRIVMSG and USERNOTICE id is unique");
        assert_eq!(sent[300].kind, "clearmsg");
        assert_eq!(sent[300].text, sent[299].text);
        assert_eq!(sent.last().unwrap().text.as_deref(), Some("back again"));
        assert_eq!(chat.connections(), 2);
    }

    #[tokio::test]
    async fn chat_refuses_a_nick_that_is_not_anonymous() {
        let chat = FakeChat::start_with(CHANNEL, vec![Step::Say { user: "a", text: "x".into() }], quick()).await;
        let (mut client, _) = tokio_tungstenite::connect_async(chat.url()).await.unwrap();
        client.send(Message::text("PASS oauth:nope\r\nNICK someone\r\nJOIN #colonytest\r\n")).await.unwrap();
        let mut seen = Seen::default();
        read(&mut client, &mut seen, |_| false).await;
        assert_eq!(seen.lines(), [":tmi.twitch.tv NOTICE * :Login authentication failed"]);
        assert_eq!((chat.connections(), chat.sent().len()), (0, 0));
    }
}
