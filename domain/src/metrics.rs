//! Per-second figures that `GET /apps/{app}/metrics` serves: a dyno's CPU, memory and disk I/O,
//! sampled by the local supervisor from `/proc`, and an app's requests as the router saw them.
//!
//! Both producers keep one record per second for the last [`WINDOW_SECONDS`]; the control API
//! asks them for a range and groups the seconds into steps of the caller's resolution here, so
//! the two agree on what a step is: steps start at `from + k * resolution`, a dyno's figures are
//! averaged over the seconds of a step it was sampled in, and an app's request counts are summed
//! with its latency histograms merged (so a coarse step's percentiles are those of every request
//! in it, not an average of per-second percentiles).

/// How far back the producers keep seconds: one hour, as Heroku's metrics API offers "down to a
/// 1 second average" for the last hour.
pub const WINDOW_SECONDS: i64 = 3600;

/// One dyno's figures over one second, or averaged over a coarser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynoSecond {
    /// The second (or the step's first second), in seconds since the Unix epoch.
    pub at: i64,
    /// CPU time used by the dyno's whole process group, in percent of one core (a dyno busy on
    /// two cores shows 200).
    pub cpu_percent: f64,
    /// Resident memory of the group's processes, in bytes (proc(5) `VmRSS`, summed).
    pub memory_rss_bytes: u64,
    /// Resident memory plus swap, in bytes: Heroku's `memory_total`.
    pub memory_total_bytes: u64,
    /// Bytes the group caused to be read from storage, per second (proc(5) `/proc/PID/io`
    /// `read_bytes`).
    pub read_bytes: u64,
    /// Bytes the group caused to be written to storage, per second (`write_bytes`).
    pub write_bytes: u64,
}

/// One dyno's seconds, as the local supervisor reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct DynoSeries {
    /// The dyno's name as its log lines give it (`web.1-abcde`, `run.1`).
    pub dyno: String,
    /// Its process type (`web`, `worker`, `run`).
    pub dyno_type: String,
    /// Its seconds, oldest first.
    pub seconds: Vec<DynoSecond>,
}

/// An app's requests over one second (or summed over a coarser step), as the router saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSecond {
    /// The second (or the step's first second), in seconds since the Unix epoch: when the
    /// requests ended.
    pub at: i64,
    /// Requests answered.
    pub requests: u32,
    /// Of them, answered with a 4xx status.
    pub status_4xx: u32,
    /// Of them, answered with a 5xx status.
    pub status_5xx: u32,
    /// Router error codes (Heroku's `H12`, `H13`, ..., and `H80` for maintenance) and how many
    /// requests ended with each, by code.
    pub codes: Vec<(&'static str, u32)>,
    /// Time from request to the end of the response.
    pub latency: LatencyHistogram,
}

impl RequestSecond {
    /// Counts one request that ended with `status` and the router's error `code`, taking
    /// `total_ms` milliseconds.
    pub fn record(&mut self, status: u16, code: Option<&'static str>, total_ms: u64) {
        self.requests = self.requests.saturating_add(1);
        match status {
            400..=499 => self.status_4xx = self.status_4xx.saturating_add(1),
            500..=599 => self.status_5xx = self.status_5xx.saturating_add(1),
            _ => {}
        }
        if let Some(code) = code {
            match self.codes.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => self.codes.push((code, 1)),
            }
        }
        self.latency.record(total_ms);
    }

    /// Adds another second's (or step's) counts to this one.
    pub fn merge(&mut self, other: &RequestSecond) {
        self.requests = self.requests.saturating_add(other.requests);
        self.status_4xx = self.status_4xx.saturating_add(other.status_4xx);
        self.status_5xx = self.status_5xx.saturating_add(other.status_5xx);
        for (code, n) in &other.codes {
            match self.codes.iter_mut().find(|(c, _)| c == code) {
                Some((_, m)) => *m = m.saturating_add(*n),
                None => self.codes.push((code, *n)),
            }
        }
        self.latency.merge(&other.latency);
    }
}

/// A latency histogram in milliseconds, sparse: only buckets that counted a request are kept,
/// so a quiet second costs a few bytes. Buckets are exact below 8 ms and then four per power of
/// two (each at most 25% wide), up to about 2^63 ms; at most [`LatencyHistogram::BUCKETS`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// (bucket, count), by bucket.
    buckets: Vec<(u8, u32)>,
}

impl LatencyHistogram {
    /// The number of buckets there can be.
    pub const BUCKETS: usize = 8 + 61 * 4;

    /// Counts one request of `ms` milliseconds.
    pub fn record(&mut self, ms: u64) {
        self.add(bucket(ms), 1);
    }

    fn add(&mut self, b: u8, n: u32) {
        match self.buckets.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(n),
            Err(i) => self.buckets.insert(i, (b, n)),
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (b, n) in &other.buckets {
            self.add(*b, *n);
        }
    }

    /// The number of buckets in use (the histogram's size is about 8 bytes each).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The `q`-quantile (0.5 for the median, 0.99), in milliseconds: the upper bound of the
    /// bucket holding it, so at most 25% above the true value. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().map(|(_, n)| u64::from(*n)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based, by the nearest-rank method.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(bucket_upper(*b));
            }
        }
        self.buckets.last().map(|(b, _)| bucket_upper(*b))
    }
}

/// The bucket of `ms`: itself below 8, then four per power of two.
fn bucket(ms: u64) -> u8 {
    if ms < 8 {
        return ms as u8;
    }
    let exp = 63 - ms.leading_zeros(); // 3 or more
    let sub = (ms >> (exp - 2)) & 3;
    (8 + (exp - 3) * 4 + sub as u32) as u8
}

/// The largest value bucket `b` holds.
fn bucket_upper(b: u8) -> u64 {
    if b < 8 {
        return u64::from(b);
    }
    let exp = 3 + u32::from(b - 8) / 4;
    let sub = u64::from(b - 8) % 4;
    let width = 1u64 << (exp - 2);
    ((4 + sub) * width).saturating_add(width - 1)
}

/// Groups a dyno's seconds (oldest first) into steps of `resolution` seconds from `from` up to
/// `to` (exclusive), averaging each figure over the seconds of the step the dyno was sampled
/// in. A step without any sample is left out.
pub fn dyno_steps(seconds: &[DynoSecond], from: i64, to: i64, resolution: i64) -> Vec<DynoSecond> {
    let resolution = resolution.max(1);
    let mut out: Vec<DynoSecond> = Vec::new();
    let mut n = 0u64;
    let mut sums = [0f64; 5];
    let flush = |out: &mut Vec<DynoSecond>, at: i64, n: &mut u64, sums: &mut [f64; 5]| {
        if *n > 0 {
            let k = *n as f64;
            out.push(DynoSecond {
                at,
                cpu_percent: sums[0] / k,
                memory_rss_bytes: (sums[1] / k) as u64,
                memory_total_bytes: (sums[2] / k) as u64,
                read_bytes: (sums[3] / k) as u64,
                write_bytes: (sums[4] / k) as u64,
            });
        }
        *n = 0;
        *sums = [0.0; 5];
    };
    let mut step = None;
    for s in seconds.iter().filter(|s| s.at >= from && s.at < to) {
        let at = from + (s.at - from) / resolution * resolution;
        if step != Some(at) {
            if let Some(prev) = step {
                flush(&mut out, prev, &mut n, &mut sums);
            }
            step = Some(at);
        }
        n += 1;
        sums[0] += s.cpu_percent;
        sums[1] += s.memory_rss_bytes as f64;
        sums[2] += s.memory_total_bytes as f64;
        sums[3] += s.read_bytes as f64;
        sums[4] += s.write_bytes as f64;
    }
    if let Some(prev) = step {
        flush(&mut out, prev, &mut n, &mut sums);
    }
    out
}

/// Groups an app's request seconds (oldest first) into steps of `resolution` seconds from
/// `from` up to `to` (exclusive), summing counts and merging histograms. A step without a
/// request is left out.
pub fn request_steps(seconds: &[RequestSecond], from: i64, to: i64, resolution: i64) -> Vec<RequestSecond> {
    let resolution = resolution.max(1);
    let mut out: Vec<RequestSecond> = Vec::new();
    for s in seconds.iter().filter(|s| s.at >= from && s.at < to) {
        let at = from + (s.at - from) / resolution * resolution;
        match out.last_mut() {
            Some(last) if last.at == at => last.merge(s),
            _ => {
                let mut step = s.clone();
                step.at = at;
                out.push(step);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_within_a_quarter() {
        let check = |ms: u64, upper: u64| {
            let b = bucket(ms);
            assert_eq!(bucket_upper(b), upper, "{ms} ms");
            assert!(upper >= ms && (upper - ms) * 4 <= ms.max(4), "{ms} ms in a bucket up to {upper}");
        };
        for (ms, upper) in
            [(0, 0), (1, 1), (7, 7), (8, 9), (9, 9), (10, 11), (15, 15), (16, 19), (100, 111), (1000, 1023)]
        {
            check(ms, upper);
        }
        for ms in (0..20).map(|e| 3u64.pow(e)) {
            check(ms, bucket_upper(bucket(ms)));
        }
        assert!(usize::from(bucket(u64::MAX)) < LatencyHistogram::BUCKETS);
        assert_eq!(bucket_upper(bucket(u64::MAX)), u64::MAX);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.5), Some(55)); // 50 is in the bucket 48..=55
        assert_eq!(h.quantile(0.99), Some(111)); // 99 is in 96..=111
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.quantile(1.0), Some(111));
    }

    #[test]
    fn request_seconds_count_classes_and_codes_and_merge_into_steps() {
        let second = |at: i64, rows: &[(u16, Option<&'static str>, u64)]| {
            let mut s = RequestSecond { at, ..RequestSecond::default() };
            for (status, code, ms) in rows {
                s.record(*status, *code, *ms);
            }
            s
        };
        let seconds = [
            second(100, &[(200, None, 5), (404, None, 1)]),
            second(101, &[(503, Some("H12"), 30_000), (200, None, 5)]),
            second(103, &[(503, Some("H12"), 30_000), (502, Some("H13"), 2)]),
        ];
        let one = request_steps(&seconds, 100, 104, 1);
        assert_eq!(one.len(), 3, "the quiet second 102 is left out");
        assert_eq!(one[0], seconds[0]);
        let two = request_steps(&seconds, 100, 104, 2);
        assert_eq!(
            two.iter().map(|s| (s.at, s.requests, s.status_4xx, s.status_5xx)).collect::<Vec<_>>(),
            [(100, 4, 1, 1), (102, 2, 0, 2)]
        );
        assert_eq!(two[1].codes, [("H12", 1), ("H13", 1)]);
        assert_eq!(two[0].latency.quantile(0.5), Some(5));
        assert_eq!(request_steps(&seconds, 101, 103, 60).len(), 1, "to is exclusive, from inclusive");
        assert_eq!(request_steps(&seconds, 101, 103, 60)[0].requests, 2);
    }

    #[test]
    fn dyno_steps_average_the_seconds_sampled() {
        let s = |at, cpu, rss| DynoSecond {
            at,
            cpu_percent: cpu,
            memory_rss_bytes: rss,
            memory_total_bytes: rss,
            read_bytes: 10,
            write_bytes: 0,
        };
        let seconds = [s(10, 100.0, 4), s(11, 50.0, 8), s(13, 20.0, 2), s(20, 0.0, 0)];
        let steps = dyno_steps(&seconds, 10, 20, 3);
        assert_eq!(
            steps,
            [
                DynoSecond {
                    at: 10,
                    cpu_percent: 75.0,
                    memory_rss_bytes: 6,
                    memory_total_bytes: 6,
                    read_bytes: 10,
                    write_bytes: 0
                },
                s(13, 20.0, 2),
            ]
        );
        assert_eq!(dyno_steps(&seconds, 10, 21, 1).len(), 4);
    }
}
