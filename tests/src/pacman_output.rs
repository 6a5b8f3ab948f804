//! pacman's output formats, for the conformance tests that compare our
//! readers with what `pacman -Qi`, `-Si` and `-Sl` print.

use std::collections::BTreeMap;

/// A list field: values joined by two spaces, "None" when empty.
pub fn list(values: &[String]) -> String {
    match values.is_empty() {
        true => "None".to_owned(),
        false => values.join("  "),
    }
}

/// pacman's `humanize_size` with two decimals, in the unit starting with
/// `unit` if given (`K` for KiB), else in the first unit giving at most 2048.
pub fn human_size(bytes: u64, unit: Option<char>) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut value = bytes as f64;
    let mut index = 0;
    while index < UNITS.len() - 1 {
        let fits = match unit {
            Some(unit) => UNITS[index].starts_with(unit),
            None => value <= 2048.0,
        };
        if fits {
            break;
        }
        value /= 1024.0;
        index += 1;
    }
    format!("{value:.2} {}", UNITS[index])
}

/// `strftime("%c")` in the C locale and UTC; "None" for a zero date.
pub fn c_locale_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if unix == 0 {
        return "None".to_owned();
    }
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {day:>2} {:02}:{:02}:{:02} {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The `Key : value` blocks of `pacman -Qi`/`-Si`; continuation lines (the
/// optional dependencies after the first) join the value with newlines,
/// without pacman's ` [installed]` marks.
pub fn parse_info(output: &str) -> Vec<BTreeMap<String, String>> {
    let mut blocks = Vec::new();
    let mut block = BTreeMap::new();
    let mut last_key = String::new();
    for line in output.lines() {
        if line.is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with(' ') {
            let value: &mut String = block
                .get_mut(&last_key)
                .expect("a continuation follows a field");
            value.push('\n');
            value.push_str(line.trim().trim_end_matches(" [installed]"));
        } else {
            let (key, value) = line.split_once(" : ").expect("a `Key : value` line");
            last_key = key.trim_end().to_owned();
            block.insert(
                last_key.clone(),
                value.trim_end_matches(" [installed]").to_owned(),
            );
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_and_size_formats_match_c_printf() {
        assert_eq!(c_locale_date(1542121917), "Tue Nov 13 15:11:57 2018");
        assert_eq!(c_locale_date(1559347200), "Sat Jun  1 00:00:00 2019");
        assert_eq!(c_locale_date(951782400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(c_locale_date(0), "None");
        assert_eq!(human_size(2558976, None), "2.44 MiB");
        assert_eq!(human_size(2048, None), "2048.00 B");
        assert_eq!(human_size(51200, None), "50.00 KiB");
        assert_eq!(human_size(2558976, Some('K')), "2499.00 KiB");
    }
}
