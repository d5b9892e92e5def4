//! Quiet hours: a daily window in the user's own time zone (`"22:00-07:30"`) during which
//! non-critical pushes and SMS wait until the window ends.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

/// Whether `name` is an IANA time zone Herald knows (the tz database is compiled in).
pub fn is_known_timezone(name: &str) -> bool {
    TimeZone::get(name).is_ok()
}

/// The calendar day (`YYYY-MM-DD`) at `now_ms` in `timezone`, or in UTC when it is unknown:
/// the day a frequency cap counts in.
pub fn local_day(now_ms: i64, timezone: Option<&str>) -> String {
    let tz = timezone.and_then(|name| TimeZone::get(name).ok()).unwrap_or(TimeZone::UTC);
    match Timestamp::from_millisecond(now_ms) {
        Ok(at) => at.to_zoned(tz).date().to_string(),
        Err(_) => String::from("invalid-time"),
    }
}

/// A daily window, `start` inclusive, `end` exclusive; it wraps midnight when `end < start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: Time,
    end: Time,
}

impl QuietHours {
    /// `HH:MM-HH:MM`, 24-hour local times.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = || format!("quiet hours {text:?} are not HH:MM-HH:MM (e.g. 22:00-07:30)");
        let (start, end) = text.split_once('-').ok_or_else(wrong)?;
        let time = |part: &str| -> Result<Time, String> {
            let (h, m) = part.trim().split_once(':').ok_or_else(wrong)?;
            let (h, m): (i8, i8) =
                (h.parse().map_err(|_| wrong())?, m.parse().map_err(|_| wrong())?);
            Time::new(h, m, 0, 0).map_err(|_| wrong())
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!("quiet hours {text:?} start and end at the same time"));
        }
        Ok(Self { start, end })
    }

    fn contains(&self, time: Time) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// When the window that `now_ms` falls in ends (ms since the epoch), in `timezone`
    /// (IANA name); `None` when `now_ms` is outside the window or the zone is unknown.
    pub fn ends_after(&self, now_ms: i64, timezone: &str) -> Option<i64> {
        let tz = TimeZone::get(timezone).ok()?;
        let now = Timestamp::from_millisecond(now_ms).ok()?.to_zoned(tz.clone());
        if !self.contains(now.time()) {
            return None;
        }
        let mut date = now.date();
        if now.time() >= self.end {
            // A window across midnight, in its evening part: it ends tomorrow.
            date = date.tomorrow().ok()?;
        }
        // In a DST gap the end moves to the first valid instant after it.
        let end = date.to_datetime(self.end).to_zoned(tz).ok()?;
        Some(end.timestamp().as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_window_across_midnight_ends_the_next_morning_in_the_users_zone() {
        let quiet = QuietHours::parse("22:00-07:30").unwrap();
        // 23:30 in Seoul (UTC+9) is 14:30 UTC.
        assert_eq!(
            quiet.ends_after(ms("2026-11-26T14:30:00Z"), "Asia/Seoul"),
            Some(ms("2026-11-26T22:30:00Z")),
            "07:30 next day in Seoul"
        );
        // 03:00 in Seoul: the same window, ending this morning.
        assert_eq!(
            quiet.ends_after(ms("2026-11-26T18:00:00Z"), "Asia/Seoul"),
            Some(ms("2026-11-26T22:30:00Z"))
        );
        assert_eq!(quiet.ends_after(ms("2026-11-26T03:00:00Z"), "Asia/Seoul"), None, "noon");
        assert_eq!(quiet.ends_after(ms("2026-11-26T22:30:00Z"), "Asia/Seoul"), None, "end excl.");
        assert_eq!(quiet.ends_after(ms("2026-11-26T14:30:00Z"), "Mars/Olympus"), None);
    }

    #[test]
    fn a_daytime_window_and_daylight_saving() {
        let quiet = QuietHours::parse("13:00-14:00").unwrap();
        assert_eq!(
            quiet.ends_after(ms("2026-07-01T17:30:00Z"), "America/New_York"),
            Some(ms("2026-07-01T18:00:00Z")),
            "EDT is UTC-4"
        );
        assert_eq!(
            quiet.ends_after(ms("2026-12-01T18:30:00Z"), "America/New_York"),
            Some(ms("2026-12-01T19:00:00Z")),
            "EST is UTC-5"
        );
    }

    #[test]
    fn the_day_is_the_users_own() {
        let at = ms("2026-11-26T20:00:00Z");
        assert_eq!(local_day(at, Some("Asia/Seoul")), "2026-11-27");
        assert_eq!(local_day(at, Some("America/New_York")), "2026-11-26");
        assert_eq!(local_day(at, None), "2026-11-26");
    }

    #[test]
    fn malformed_windows_are_refused() {
        for bad in ["22:00", "25:00-07:00", "22:00-07:60", "22-07", "07:00-07:00"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }
}
