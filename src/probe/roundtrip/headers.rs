//! What a round trip reads back from a delivered message: its header fields, the dates
//! in `Date:`, `Received:` and IMAP's INTERNALDATE, and the transit they imply.
//!
//! Everything here is a pure function of server-supplied text, bounded in what it
//! keeps, and never panics (the `roundtrip_headers` fuzz target holds it to that).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most header fields kept from one message: a message through a large provider
/// carries a dozen `Received:` fields; more is a loop or a hostile server.
pub const MAX_FIELDS: usize = 64;
/// The most characters kept of one (unfolded) field value.
pub const MAX_FIELD_LEN: usize = 2048;
/// Nested comments deeper than this are not a date anybody wrote.
const MAX_COMMENT_DEPTH: usize = 8;
/// Dates outside these years are not a message of ours (and stay far from overflow).
const YEARS: std::ops::RangeInclusive<i64> = 1970..=9999;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Seconds since the Unix epoch, or `None` for a date that does not exist.
fn epoch_seconds(
    year: i64,
    month: u32,
    day: u32,
    (hour, minute, second): (u32, u32, u32),
    offset_minutes: i64,
) -> Option<i64> {
    let valid = YEARS.contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second <= 60;
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second)
            - offset_minutes * 60
    })
}

/// `t` as an RFC 5322 date in UTC: `Mon, 30 Nov 2026 07:41:40 +0000`.
pub fn format_rfc5322(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month = MONTH_NAMES[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} +0000",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// `text` with comments (parenthesised, possibly nested) replaced by spaces, or
/// `None` when they nest too deep.
fn without_comments(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in text.chars() {
        if depth > 0 {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                out.push(' ');
            }
            if depth > MAX_COMMENT_DEPTH {
                return None;
            }
            continue;
        }
        match c {
            '(' => depth = 1,
            ',' => out.push(' '),
            _ => out.push(c),
        }
    }
    Some(out)
}

fn month_number(name: &str) -> Option<u32> {
    let prefix = name.get(..3)?.to_ascii_lowercase();
    let index = MONTHS.iter().position(|m| *m == prefix)?;
    u32::try_from(index + 1).ok()
}

fn number(text: &str, digits: std::ops::RangeInclusive<usize>) -> Option<u32> {
    (digits.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `HH:MM` or `HH:MM:SS` (a fraction of a second is ignored).
fn time_of_day(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(':');
    let hour = number(parts.next()?, 1..=2)?;
    let minute = number(parts.next()?, 2..=2)?;
    let second = match parts.next() {
        Some(s) => number(s.split('.').next()?, 2..=2)?,
        None => 0,
    };
    parts.next().is_none().then_some((hour, minute, second))
}

/// A zone as minutes east of UTC: `+hhmm`, `-hhmm`, or an RFC 5322 obsolete name
/// (`UT`, `GMT`, `Z`, the US zones; other military letters mean "unknown", -0000).
fn zone_minutes(text: &str) -> Option<i64> {
    if let Some(digits) = text.strip_prefix(['+', '-']) {
        let value = number(digits, 4..=4)?;
        let (hours, minutes) = (value / 100, value % 100);
        if minutes >= 60 {
            return None;
        }
        let total = i64::from(hours * 60 + minutes);
        return Some(if text.starts_with('-') { -total } else { total });
    }
    Some(match text.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4 * 60,
        "EST" | "CDT" => -5 * 60,
        "CST" | "MDT" => -6 * 60,
        "MST" | "PDT" => -7 * 60,
        "PST" => -8 * 60,
        one if one.len() == 1 && one.bytes().all(|b| b.is_ascii_alphabetic()) => 0,
        _ => return None,
    })
}

/// An RFC 5322 date-time (`Mon, 30 Nov 2026 07:41:40 +0000`, with the obsolete forms:
/// no weekday, two-digit years, zone names, comments, missing seconds), as seconds
/// since the Unix epoch.
pub fn parse_rfc5322_date(text: &str) -> Option<i64> {
    let text = without_comments(text)?;
    let mut words = text.split_whitespace().peekable();
    if words
        .peek()
        .is_some_and(|w| w.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        words.next();
    }
    let day = number(words.next()?, 1..=2)?;
    let month = month_number(words.next()?)?;
    let year_text = words.next()?;
    let year = i64::from(number(year_text, 2..=4)?);
    let year = match year_text.len() {
        2 if year < 50 => year + 2000,
        2 | 3 => year + 1900,
        _ => year,
    };
    let time = time_of_day(words.next()?)?;
    let zone = match words.next() {
        Some(zone) => zone_minutes(zone)?,
        None => 0,
    };
    epoch_seconds(year, month, day, time, zone)
}

/// IMAP's INTERNALDATE (`30-Nov-2026 07:41:40 +0000`, the day possibly space-padded),
/// as seconds since the Unix epoch.
pub fn parse_internaldate(text: &str) -> Option<i64> {
    let mut words = text.split_whitespace();
    let date = words.next()?;
    let time = time_of_day(words.next()?)?;
    let zone = zone_minutes(words.next()?)?;
    if words.next().is_some() {
        return None;
    }
    let mut parts = date.split('-');
    let day = number(parts.next()?, 1..=2)?;
    let month = month_number(parts.next()?)?;
    let year = i64::from(number(parts.next()?, 4..=4)?);
    if parts.next().is_some() {
        return None;
    }
    epoch_seconds(year, month, day, time, zone)
}

/// The date at the end of a `Received:` field (after its last `;`).
pub fn received_date(value: &str) -> Option<i64> {
    parse_rfc5322_date(value.rsplit_once(';')?.1)
}

/// Header fields, unfolded: `(lower-case name, value)`, in the order the message has
/// them (for `Received:`, the last hop first). At most [`MAX_FIELDS`], each value cut
/// at [`MAX_FIELD_LEN`] characters.
pub fn parse_fields(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            // The end of the header block.
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                append_bounded(value, " ");
                append_bounded(value, line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if fields.len() == MAX_FIELDS {
            break;
        }
        let mut kept = String::new();
        append_bounded(&mut kept, value.trim());
        fields.push((name.trim().to_ascii_lowercase(), kept));
    }
    fields
}

fn append_bounded(value: &mut String, more: &str) {
    let room = MAX_FIELD_LEN.saturating_sub(value.chars().count());
    value.extend(more.chars().take(room));
}

/// What the `Received:` fields say about the way the message took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transit {
    /// How many `Received:` fields (hops) the message carries.
    pub hops: usize,
    /// How many of them end in a date that parses.
    pub dated: usize,
    /// From the first hop (the submission server) to the last (final delivery), by
    /// the servers' own clocks; `None` with fewer than two dated hops.
    pub seconds: Option<i64>,
}

/// The transit from the `Received:` fields of `fields` (see [`parse_fields`]).
pub fn transit(fields: &[(String, String)]) -> Transit {
    let received: Vec<Option<i64>> = fields
        .iter()
        .filter(|(name, _)| name == "received")
        .map(|(_, value)| received_date(value))
        .collect();
    let dates: Vec<i64> = received.iter().flatten().copied().collect();
    let seconds = match (dates.first(), dates.last()) {
        // The first field is the last hop; the last field the first hop.
        (Some(last_hop), Some(first_hop)) if dates.len() >= 2 => Some(last_hop - first_hop),
        _ => None,
    };
    Transit {
        hops: received.len(),
        dated: dates.len(),
        seconds,
    }
}

/// Seconds since the epoch as a wall-clock time (dates before 1970 do not parse).
pub fn to_system_time(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5322_dates_in_their_common_and_obsolete_forms() {
        let t = 1_796_024_500; // Mon, 30 Nov 2026 07:41:40 +0000
        for text in [
            "Mon, 30 Nov 2026 07:41:40 +0000",
            "30 Nov 2026 07:41:40 +0000",
            "Mon, 30 Nov 2026 08:41:40 +0100 (CET)",
            "Mon, 30 Nov 26 02:41:40 EST",
            "Mon,  30 Nov 2026 07:41:40 GMT",
            "Monday, 30 November 2026 07:41:40.123 -0000",
        ] {
            assert_eq!(parse_rfc5322_date(text), Some(t), "{text}");
        }
        assert_eq!(parse_rfc5322_date("30 Nov 2026 07:41 +0000"), Some(t - 40));
        for bad in [
            "",
            "31 Nov 2026 07:41:40 +0000",
            "30 Foo 2026 07:41:40 +0000",
            "30 Nov 2026 24:00:00 +0000",
            "30 Nov 2026 07:41:40 +0960",
            "30 Nov 2026 07:41:40 Mars",
            "(((((((((((",
        ] {
            assert_eq!(parse_rfc5322_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for secs in [0, 951_782_400, 1_796_024_500, 4_102_444_799] {
            let t = to_system_time(secs);
            let text = format_rfc5322(t);
            assert_eq!(parse_rfc5322_date(&text), Some(secs), "{text}");
        }
        assert_eq!(
            format_rfc5322(to_system_time(1_796_024_500)),
            "Mon, 30 Nov 2026 07:41:40 +0000"
        );
    }

    #[test]
    fn internaldates_parse_with_a_padded_day() {
        assert_eq!(
            parse_internaldate("30-Nov-2026 07:41:40 +0000"),
            Some(1_796_024_500)
        );
        assert_eq!(
            parse_internaldate(" 1-Dec-2026 00:41:40 -0700"),
            Some(1_796_024_500 + 24 * 3600)
        );
        assert_eq!(parse_internaldate("30-Nov-2026 07:41:40"), None);
    }

    #[test]
    fn transit_runs_from_the_first_hop_to_the_last() {
        let block = b"Received: from mail.example.test ([127.0.0.1])\r\n\
            \tby vm with LMTPS\r\n\
            \tfor <probe@example.test>; Mon, 30 Nov 2026 07:41:43 +0000\r\n\
            Received: from [127.0.0.1] (helo=client.example.test)\r\n\
            \tby mail.example.test with esmtpsa (Exim 4.96)\r\n\
            \tfor probe@example.test;\r\n\
            \tMon, 30 Nov 2026 07:41:40 +0000\r\n\
            Received: by broken\r\n\
            X-Mailprobe-Token: mp1.x\r\n\r\nbody: not a field\r\n";
        let fields = parse_fields(block);
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[3], ("x-mailprobe-token".into(), "mp1.x".into()));
        assert_eq!(
            transit(&fields),
            Transit {
                hops: 3,
                dated: 2,
                seconds: Some(3)
            }
        );
    }

    #[test]
    fn fields_are_bounded_in_number_and_length() {
        let mut block = Vec::new();
        for _ in 0..MAX_FIELDS * 2 {
            block.extend_from_slice(b"Received: x\r\n");
        }
        assert_eq!(parse_fields(&block).len(), MAX_FIELDS);
        let long = format!("Subject: {}\r\n", "a".repeat(MAX_FIELD_LEN * 2));
        assert_eq!(parse_fields(long.as_bytes())[0].1.len(), MAX_FIELD_LEN);
    }
}
