//! Issue 13, the mailbox side: the sweep, servers without IDLE or UIDPLUS, routes
//! that share a mailbox, a hostile mailbox, and the wait that holds no slot.

use super::*;

/// A message placed in the mailbox by hand, `name` with `headers`.
fn message(subject: &str, headers: &str) -> String {
    format!("From: someone@example.test\nTo: {USER}\nSubject: {subject}\n{headers}\nthe body\n")
}

/// Sets a placed message's modification time, which Dovecot's Maildir takes as its
/// arrival (INTERNALDATE).
fn arrived_at(path: &std::path::Path, when: SystemTime) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(when)
            .set_accessed(when),
    )
    .unwrap();
}

/// The sweep deletes only what its rules allow: this route's message left behind
/// (older than the timeout) and another route's expired one. A message without the
/// header, one whose header is not a token, and another route's recent message are
/// never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_sweep_never_touches_another_message() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        let maildir = bed.maildir();
        let now = SystemTime::now();
        let hour_ago = now - Duration::from_secs(3600);
        let token = |route, started: SystemTime| Token {
            nonce: 42,
            ..Token::new(route, started)
        };
        let ours = route_of("rt", USER);
        let header = |t: Token| format!("X-Mailprobe-Token: {t}");
        maildir.place("INBOX", "100.plain.test", &message("hello", ""), None);
        maildir.place(
            "INBOX",
            "101.garbled.test",
            &message("x", "X-Mailprobe-Token: mp1.not-a-token"),
            None,
        );
        maildir.place(
            "INBOX",
            "102.recent-other.test",
            &message("x", &header(token(7, now))),
            None,
        );
        let expired = now - Duration::from_secs(9 * 24 * 3600);
        maildir.place(
            "INBOX",
            "103.expired-other.test",
            &message("x", &header(token(7, expired))),
            None,
        );
        let left = maildir.place(
            "INBOX",
            "104.left-behind.test",
            &message("x", &header(token(ours, hour_ago))),
            None,
        );
        arrived_at(&left, hour_ago + Duration::from_secs(1));

        let (agent, results) = Agent::start_and_wait(&bed.config(), &["rt"]).await;
        assert_success(&results[0], &bed);
        assert_eq!(
            facts(&results[0]).sweep,
            Some(Sweep {
                late: 0,
                left_behind: 1,
                expired: 1,
                kept: 1,
                stuck: 0
            })
        );
        for kept in [
            "100.plain.test",
            "101.garbled.test",
            "102.recent-other.test",
        ] {
            assert!(maildir.holds("INBOX", kept), "{kept} was touched");
        }
        for gone in ["103.expired-other.test", "104.left-behind.test"] {
            assert!(!maildir.holds("INBOX", gone), "{gone} is still there");
        }
        let metrics = agent.metrics().await;
        assert_eq!(
            rt(&metrics, "mailprobe_roundtrip_late_total"),
            0.0,
            "left behind is not late"
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// IMAP without IDLE and without UIDPLUS (Dovecot advertising neither): the wait
/// polls with NOOP, the cleanup flags `\Deleted` and EXPUNGEs — but never while
/// another message is flagged `\Deleted`, which EXPUNGE would remove too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_without_idle_or_uidplus_polling_and_a_careful_expunge() {
    within(TEST_LIMIT, async {
        let bed = Bed::with(|dovecot| {
            dovecot.imap_capability("IMAP4rev1 SASL-IR LITERAL+ ENABLE SPECIAL-USE")
        });
        let maildir = bed.maildir();
        maildir.place("INBOX", "100.plain.test", &message("hello", ""), None);
        let mut agent = Agent::start(&bed.config()).await;
        let first = agent.next_result("rt").await;
        assert_success(&first, &bed);
        let facts_1 = facts(&first);
        assert_eq!(facts_1.idle, Some(false));
        let cleanup = facts_1.cleanup.as_deref().unwrap_or_default();
        assert!(cleanup.contains("\\Deleted and EXPUNGE"), "{cleanup}");
        assert!(maildir.probe_messages("INBOX").is_empty());
        assert!(maildir.holds("INBOX", "100.plain.test"));

        maildir.place(
            "INBOX",
            "101.flagged.test",
            &message("to be deleted by its owner", ""),
            Some("ST"),
        );
        let second = agent.next_result("rt").await;
        assert_success(&second, &bed);
        let cleanup = facts(&second).cleanup.clone().unwrap_or_default();
        assert!(
            cleanup.starts_with("left UID") && cleanup.contains("flagged \\Deleted"),
            "{cleanup}"
        );
        assert_eq!(
            maildir.probe_messages("INBOX").len(),
            1,
            "ours is left, not expunged"
        );
        let flagged = maildir
            .messages("INBOX")
            .into_iter()
            .find(|m| m.header("Subject") == Some("to be deleted by its owner"))
            .expect("the other message is still there");
        assert!(flagged.deleted(), "and still flagged as its owner left it");
        assert!(maildir.holds("INBOX", "100.plain.test"));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// Several round-trip targets sharing a mailbox: each finds and deletes its own
/// message only (their tokens differ by route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_two_routes_share_a_mailbox() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        let targets = bed.target("rt") + &bed.target("rt-second");
        let yaml = config_with(NO_RESOLVER, "1h", "2s", &targets);
        let (agent, results) = Agent::start_and_wait(&yaml, &["rt", "rt-second"]).await;
        let tokens: Vec<Token> = results
            .iter()
            .map(|judged| {
                assert_success(judged, &bed);
                Token::parse(&facts(judged).token).expect("a token")
            })
            .collect();
        assert_ne!(tokens[0].route, tokens[1].route);
        assert!(bed.maildir().probe_messages("INBOX").is_empty());
        let both: Vec<Arc<Judged>> = results;
        assert!(both.iter().all(|j| {
            facts(j)
                .cleanup
                .as_deref()
                .is_some_and(|c| c.starts_with("deleted"))
        }));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// An IMAP server that answers the sweep's FETCH with a literal of 4 GB and then
/// streams it: the agent reads at most its budget, fails in bounded time, and the
/// round is a protocol error, not a hang, an out-of-memory or a crash. (A fake:
/// no real server does this on demand.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_an_endless_literal_from_the_mailbox_is_cut_off() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        let hostile = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            if !peer.send(b"* OK fake IMAP ready\r\n").await {
                return;
            }
            while let Some(line) = peer.line().await {
                let (tag, command) = line.split_once(' ').unwrap_or((&line, ""));
                let verb = command.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                let verb = verb.to_ascii_uppercase();
                let answer = if verb.starts_with("CAPABILITY") {
                    format!("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n")
                } else if verb.starts_with("SELECT") || verb.starts_with("EXAMINE") {
                    format!("* 1 EXISTS\r\n{tag} OK [READ-WRITE] done\r\n")
                } else if verb == "UID SEARCH" {
                    format!("* SEARCH 1\r\n{tag} OK done\r\n")
                } else if verb == "UID FETCH" {
                    let head = b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (X-MAILPROBE-TOKEN)] {4000000000}\r\n";
                    if !peer.send(head).await {
                        return;
                    }
                    let chunk = vec![b'A'; 64 * 1024];
                    while peer.send(&chunk).await {}
                    return;
                } else {
                    format!("{tag} OK done\r\n")
                };
                if !peer.send(answer.as_bytes()).await {
                    return;
                }
            }
        })
        .await;
        let yaml = config_with(
            NO_RESOLVER,
            "1h",
            "2s",
            &bed.target_to("rt", hostile.addr.port(), "none"),
        );
        let (agent, results) = Agent::start_and_wait(&yaml, &["rt"]).await;
        let judged = &results[0];
        assert_eq!(failed(judged), (Phase::Cleanup, ErrorKind::ProtocolError));
        let message = &judged.result.failure().unwrap().message;
        // Cut off by the receiving session's byte budget (4 MiB), not by the timeout.
        assert!(message.contains("more than 4194304 bytes"), "{message}");
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// A round trip holds a concurrency slot only while it submits: with one slot, a
/// target probed every second keeps probing while the round trip waits for its
/// message (here frozen, so it waits the whole window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_wait_for_delivery_holds_no_slot() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        bed.exim.fault(MailFault::Freeze, true);
        let (_open, addr) = crate::support::open_port();
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\nmax_concurrent_probes: 1\n\
             defaults: {{interval: 1s, timeout: 1s, start_jitter: 0s}}\n\
             site: {{gateway: none, resolvers: [\"{NO_RESOLVER}\"]}}\ntargets:\n\
             \x20 - {{name: open, protocol: tcp, host: 127.0.0.1, port: {}}}\n{}",
            addr.port(),
            bed.target("rt")
        );
        let mut agent = Agent::start(&yaml).await;
        let rt = agent.next_result("rt").await;
        assert_eq!(failed(&rt), (Phase::Deliver, ErrorKind::NotDelivered));
        let submitted = facts(&rt).submitted.as_ref().expect("submitted").at;
        let finished = rt.result.started_at + rt.result.duration;
        // The results of `open` that came in meanwhile, oldest first.
        let mut during_the_wait = 0;
        loop {
            let open = agent.next_result("open").await;
            if open.result.started_at > finished {
                break;
            }
            if open.result.started_at > submitted {
                during_the_wait += 1;
            }
        }
        assert!(
            during_the_wait > 0,
            "no probe of `open` started while the round trip waited: it held the slot"
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// The wait for delivery starts when the message is accepted, not when the judgement
/// gets its turn: the scheduler judges a target's rounds one after the other, so a
/// judgement can start late. Here the judgement starts only after the round's whole
/// timeout; the round still found and deleted its message in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_wait_starts_with_the_acceptance_not_the_judgement() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        let config = mailprobe::config::from_str(&bed.config(), std::path::Path::new("rt.yaml"))
            .expect("valid configuration");
        let env = Arc::new(mailprobe::probe::ProbeEnv::new(&config).expect("environment"));
        let site = Arc::new(mailprobe::site::SiteMonitor::new(&config, Arc::clone(&env)));
        let pipeline = mailprobe::pipeline::Pipeline::new(env, site);
        let target = Arc::clone(&config.targets[0]);
        let probed = pipeline.probe(&target).await;
        assert!(
            probed.result().is_none(),
            "a round trip is not finished by its first half"
        );
        // A judgement that comes late, after the round's whole timeout.
        tokio::time::sleep(target.timeout).await;
        let judged = probed.judge(&pipeline).await;
        assert_success(&judged, &bed);
        assert!(bed.maildir().probe_messages("INBOX").is_empty());
    })
    .await;
}
