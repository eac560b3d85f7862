//! Leases against concurrent applies: before its first write to a target, apply takes a lease
//! on it — a marker in the cloud with who holds it, until when, and for which plan — using the
//! cloud's conditional write where it has one. A second apply that finds an unexpired lease
//! stops before writing and says who holds it; an expired one (its holder was killed) is taken
//! over. Pure: the clock is passed in, the cloud code stores and reads the text.

use std::fmt;

/// How long a lease holds unless released (`PERIMETER_LEASE_SECONDS` overrides it).
pub const DEFAULT_LEASE_SECONDS: u64 = 900;

/// One lease, as stored in the cloud.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    /// Who holds it: `PERIMETER_LEASE_OWNER`, or `user@host pid N`.
    pub owner: String,
    /// When it ends, in seconds since the Unix epoch.
    pub expires: u64,
    /// The first 12 hex digits of the plan's fingerprint.
    pub plan: String,
}

impl Lease {
    /// A lease for `owner` from `now` for `seconds`.
    pub fn new(owner: &str, now: u64, seconds: u64, plan: &str) -> Self {
        Self {
            owner: clean(owner),
            expires: now.saturating_add(seconds),
            plan: plan
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(12)
                .collect(),
        }
    }

    /// This apply's lease from its environment (`get` reads a variable): the holder from
    /// [`owner_from`], the length from `PERIMETER_LEASE_SECONDS` (else
    /// [`DEFAULT_LEASE_SECONDS`]).
    pub fn for_apply(get: impl Fn(&str) -> Option<String>, pid: u32, now: u64, plan: &str) -> Self {
        let seconds = get("PERIMETER_LEASE_SECONDS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_LEASE_SECONDS);
        Self::new(&owner_from(get, pid), now, seconds, plan)
    }

    /// `owner=…;expires=…;plan=…` — the stored form (fits a 256-character AWS tag value).
    pub fn encode(&self) -> String {
        format!(
            "owner={};expires={};plan={}",
            self.owner, self.expires, self.plan
        )
    }

    /// The stored form back; `None` when it is not a lease (then it is treated as held until
    /// someone removes it: perimeter never takes over what it cannot read).
    pub fn decode(text: &str) -> Option<Self> {
        let mut owner = None;
        let mut expires = None;
        let mut plan = None;
        for part in text.trim().split(';') {
            match part.split_once('=')? {
                ("owner", v) => owner = Some(v.to_string()),
                ("expires", v) => expires = v.parse().ok(),
                ("plan", v) => plan = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Self {
            owner: owner?,
            expires: expires?,
            plan: plan.unwrap_or_default(),
        })
    }

    /// True once the lease has run out.
    pub fn expired(&self, now: u64) -> bool {
        self.expires <= now
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by {} until {} (plan {})",
            self.owner,
            utc(self.expires),
            self.plan
        )
    }
}

/// Who an apply is, from its environment (`get` reads a variable): `PERIMETER_LEASE_OWNER` if
/// set, else `user@host pid N`, with the CI job when there is one.
pub fn owner_from(get: impl Fn(&str) -> Option<String>, pid: u32) -> String {
    if let Some(owner) = get("PERIMETER_LEASE_OWNER").filter(|o| !o.trim().is_empty()) {
        return clean(&owner);
    }
    let user = get("USER")
        .or_else(|| get("LOGNAME"))
        .unwrap_or_else(|| "unknown".into());
    let host = get("HOSTNAME").unwrap_or_else(|| "unknown-host".into());
    let job = get("GITHUB_RUN_ID")
        .map(|r| format!(" github run {r}"))
        .or_else(|| get("CI_JOB_ID").map(|j| format!(" ci job {j}")))
        .unwrap_or_default();
    clean(&format!("{user}@{host} pid {pid}{job}"))
}

/// Owner names go into tags and descriptions: printable ASCII without the separators.
fn clean(owner: &str) -> String {
    owner
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| !matches!(c, ';' | '='))
        .take(96)
        .collect()
}

/// `2026-12-01T23:30:00Z`.
pub fn utc(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_round_trips_and_expires() {
        let l = Lease::new("ci; job=7 ", 1_000, 900, "abc123def4567890");
        assert_eq!(l.encode(), "owner=ci job7 ;expires=1900;plan=abc123def456");
        assert_eq!(Lease::decode(&l.encode()), Some(l.clone()));
        assert!(!l.expired(1_899) && l.expired(1_900));
        assert_eq!(Lease::decode("made by hand"), None);
    }

    #[test]
    fn utc_is_iso_8601() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_168_700), "2026-12-01T23:45:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
