//! Printing connection URLs without their secrets.

/// `url` with any password replaced by `***`, for logs and error messages.
///
/// ```
/// use quern_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/site"), "postgres://app:***@db:5432/site");
/// assert_eq!(redact_url("redis://:pw@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// ```
///
/// A `password=` query parameter is redacted as well.
pub fn redact_url(url: &str) -> String {
    let mut out = match url.find("://") {
        Some(scheme_end) => {
            let rest_start = scheme_end + 3;
            let rest = &url[rest_start..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    let redacted = match userinfo.find(':') {
                        Some(colon) => format!("{}:***", &userinfo[..colon]),
                        None => userinfo.to_owned(),
                    };
                    format!("{}{}{}", &url[..rest_start], redacted, &rest[at..])
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    if let Some(q) = out.find("password=") {
        let value_start = q + "password=".len();
        let value_end = out[value_start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| value_start + e);
        out.replace_range(value_start..value_end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_userinfo_and_query_passwords() {
        assert_eq!(
            redact_url("postgres://u:p@h/db?password=x&sslmode=disable"),
            "postgres://u:***@h/db?password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("rediss://u:p:q@h"), "rediss://u:***@h");
        assert_eq!(
            redact_url("host=h password=x dbname=d"),
            "host=h password=*** dbname=d"
        );
    }
}
