//! The one rule for schema names (`database.schema`, `replay --into`, `audit --keep`). A
//! leaf, so that the `[database]` section can check it without importing the pool code.

/// Checks that `name` is a schema name Postgres takes as written: a plain lower-case
/// identifier. Every statement names the schema unquoted, and Postgres folds unquoted
/// names to lower case, so `WXLEDGER` would *be* `wxledger`: names that fold (or need
/// quotes) are refused rather than compared as written and then used as folded. The
/// one rule for the live schema (`database.schema`), `replay --into` and `audit --keep`.
pub fn check_schema_name(name: &str) -> Result<(), &'static str> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !plain {
        return Err(
            "must be a plain lower-case name: at most 63 of a-z, 0-9 or '_', not \
             starting with a digit (Postgres folds unquoted names to lower case)",
        );
    }
    if name.starts_with("pg_") {
        return Err("must not start with pg_ (reserved for Postgres's own schemas)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_schema_name;

    #[test]
    fn schema_names_are_taken_only_as_postgres_would_fold_them() {
        for good in ["wxledger", "t_0123abcd", "books_2026_11_01", "_x"] {
            assert_eq!(check_schema_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "WXLEDGER",
            "WxLedger",
            "drop table;",
            "wx-ledger",
            "1abc",
            "pg_books",
            "\"wxledger\"",
            "wxledger\u{e9}",
            &"a".repeat(64),
        ] {
            let problem = check_schema_name(bad).expect_err(bad);
            assert!(!problem.is_empty());
        }
        assert!(check_schema_name("WXLEDGER")
            .unwrap_err()
            .contains("lower-case"));
    }
}
