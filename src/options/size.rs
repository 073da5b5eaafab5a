//! Sizes as users write them on the command line, in options and through the API.

/// Parses a size such as `512M`, `2G`, `4096K` or `1GiB` into bytes; a bare number is MiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "'{text}' is not a size: expected a number with a unit, like 512M or 2G"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "B" => 0,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}': use K, M, G or T"
            ))
        }
    };
    if number == 0 {
        return Err("the size must be greater than zero".into());
    }
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1536MiB"), Ok(1536 << 20));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("256"), Ok(256 << 20));
        assert_eq!(parse_size("65536B"), Ok(65536));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert!(parse_size("0").unwrap_err().contains("greater than zero"));
        assert!(parse_size("0G").unwrap_err().contains("greater than zero"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("-1G").is_err());
    }
}
