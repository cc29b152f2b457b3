//! The names the ledger writes: account names and posting-group ids. Each has exactly
//! one `Display` (what is stored in `ledger_entries`, `balances` and outcome events) and
//! one `FromStr` (how a reader such as the audit or the outcome stream gets the type
//! back), so a writer and a reader cannot drift apart.

use std::{fmt, str::FromStr};

use uuid::Uuid;

/// Money WeChat Pay holds for us.
pub const CLEARING: &str = "wechat_clearing";
/// Goods and services sold.
pub const SALES: &str = "sales";
/// Money received that could not be assigned.
pub const SUSPENSE: &str = "suspense";
/// Refunds promised to payers and not yet settled by WeChat (or released).
pub const REFUNDS: &str = "refunds_pending";
/// Prefix of every wallet account.
pub const WALLET_PREFIX: &str = "wallet:";
/// A SQL `LIKE` pattern matching every wallet account (bind it as a parameter).
pub const WALLET_LIKE: &str = "wallet:%";
/// Prefix of every [`GroupId::Payment`], for SQL that joins postings to payments.
pub const PAYMENT_GROUP_PREFIX: &str = "payment:";

/// A ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// [`CLEARING`].
    Clearing,
    /// [`SALES`].
    Sales,
    /// [`SUSPENSE`].
    Suspense,
    /// [`REFUNDS`].
    RefundsPending,
    /// What we owe a user: `wallet:<user id>` (never below zero).
    Wallet(Uuid),
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Clearing => f.write_str(CLEARING),
            Account::Sales => f.write_str(SALES),
            Account::Suspense => f.write_str(SUSPENSE),
            Account::RefundsPending => f.write_str(REFUNDS),
            Account::Wallet(user_id) => write!(f, "{WALLET_PREFIX}{user_id}"),
        }
    }
}

/// A string that is not an account name or group id the ledger writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {got:?} is not one the ledger writes")]
pub struct ParseIdError {
    what: &'static str,
    got: String,
}

impl ParseIdError {
    fn new(what: &'static str, got: &str) -> Self {
        Self {
            what,
            got: got.to_owned(),
        }
    }
}

impl FromStr for Account {
    type Err = ParseIdError;

    /// The account named `s`. A wallet's user id must be written as [`std::fmt::Display`] writes it
    /// (hyphenated, lower case), so that parsing and writing back gives the same bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseIdError::new("account", s);
        Ok(match s {
            CLEARING => Account::Clearing,
            SALES => Account::Sales,
            SUSPENSE => Account::Suspense,
            REFUNDS => Account::RefundsPending,
            _ => {
                let id = s.strip_prefix(WALLET_PREFIX).ok_or_else(bad)?;
                let user_id = Uuid::try_parse(id).map_err(|_| bad())?;
                if user_id.hyphenated().to_string() != id {
                    return Err(bad());
                }
                Account::Wallet(user_id)
            }
        })
    }
}

/// The account of a user's wallet: `wallet:<user id>`.
pub fn wallet_account(user_id: Uuid) -> String {
    Account::Wallet(user_id).to_string()
}

/// Whether `account` is in the wallet family (whose balances may never go below zero).
/// Only the prefix is looked at, as the SQL pattern [`WALLET_LIKE`] does.
pub fn is_wallet(account: &str) -> bool {
    account.starts_with(WALLET_PREFIX)
}

/// The id of a posting group; its lines sum to zero.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupId {
    /// `payment:<transaction id>`: WeChat's word that a transaction was paid, booked as a
    /// sale, a recharge or into suspense.
    Payment(String),
    /// `wallet_pay:<out_trade_no>`: an order paid from the payer's wallet.
    WalletPay(String),
    /// `refund:<out_refund_no>`: an order paid from the wallet, refunded to it at once.
    RefundToWallet(String),
    /// `refund:<out_refund_no>:reserve`: a refund's amount set aside.
    RefundReserve(String),
    /// `refund:<out_refund_no>:settle`: WeChat paid a refund out.
    RefundSettle(String),
    /// `refund:<out_refund_no>:release`: a refund refused or closed; the amount goes back.
    RefundRelease(String),
}

impl GroupId {
    /// The refund the group is about, for the four refund groups.
    pub fn out_refund_no(&self) -> Option<&str> {
        match self {
            GroupId::RefundToWallet(no)
            | GroupId::RefundReserve(no)
            | GroupId::RefundSettle(no)
            | GroupId::RefundRelease(no) => Some(no),
            GroupId::Payment(_) | GroupId::WalletPay(_) => None,
        }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupId::Payment(transaction_id) => write!(f, "{PAYMENT_GROUP_PREFIX}{transaction_id}"),
            GroupId::WalletPay(out_trade_no) => write!(f, "wallet_pay:{out_trade_no}"),
            GroupId::RefundToWallet(no) => write!(f, "refund:{no}"),
            GroupId::RefundReserve(no) => write!(f, "refund:{no}:reserve"),
            GroupId::RefundSettle(no) => write!(f, "refund:{no}:settle"),
            GroupId::RefundRelease(no) => write!(f, "refund:{no}:release"),
        }
    }
}

impl FromStr for GroupId {
    type Err = ParseIdError;

    /// The group named `s`: a known prefix and a non-empty id. A refund number with no
    /// suffix may not hold a `:` (WeChat's numbers never do), so no id names two groups.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseIdError::new("group id", s);
        let non_empty = |id: &str| (!id.is_empty()).then(|| id.to_owned()).ok_or_else(bad);
        if let Some(transaction_id) = s.strip_prefix(PAYMENT_GROUP_PREFIX) {
            return Ok(GroupId::Payment(non_empty(transaction_id)?));
        }
        let (prefix, rest) = s.split_once(':').ok_or_else(bad)?;
        match prefix {
            "wallet_pay" => Ok(GroupId::WalletPay(non_empty(rest)?)),
            "refund" => match rest.rsplit_once(':') {
                None => Ok(GroupId::RefundToWallet(non_empty(rest)?)),
                Some((no, "reserve")) => Ok(GroupId::RefundReserve(non_empty(no)?)),
                Some((no, "settle")) => Ok(GroupId::RefundSettle(non_empty(no)?)),
                Some((no, "release")) => Ok(GroupId::RefundRelease(non_empty(no)?)),
                Some(_) => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_round_trips() {
        let user = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let all = [
            (Account::Clearing, "wechat_clearing"),
            (Account::Sales, "sales"),
            (Account::Suspense, "suspense"),
            (Account::RefundsPending, "refunds_pending"),
            (
                Account::Wallet(user),
                "wallet:12345678-9abc-def0-1234-56789abcdef0",
            ),
        ];
        for (account, name) in all {
            assert_eq!(account.to_string(), name);
            assert_eq!(name.parse::<Account>(), Ok(account));
        }
        assert_eq!(
            wallet_account(user),
            "wallet:12345678-9abc-def0-1234-56789abcdef0"
        );
        assert!(is_wallet(&wallet_account(user)));
        assert!(!is_wallet(SALES));
    }

    #[test]
    fn malformed_accounts_are_refused() {
        for bad in [
            "",
            "Sales",
            "sales ",
            "wallet:",
            "wallet:nobody",
            "wallet:12345678-9ABC-DEF0-1234-56789ABCDEF0",
            "wallet:123456789abcdef0123456789abcdef0",
            "wallet:{12345678-9abc-def0-1234-56789abcdef0}",
            "wallet 12345678-9abc-def0-1234-56789abcdef0",
        ] {
            assert!(bad.parse::<Account>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_group_id_round_trips() {
        let all = [
            (GroupId::Payment("4200000001".into()), "payment:4200000001"),
            (GroupId::WalletPay("o123456".into()), "wallet_pay:o123456"),
            (GroupId::RefundToWallet("rf1".into()), "refund:rf1"),
            (GroupId::RefundReserve("rf1".into()), "refund:rf1:reserve"),
            (GroupId::RefundSettle("rf1".into()), "refund:rf1:settle"),
            (
                GroupId::RefundRelease("r|*@-_".into()),
                "refund:r|*@-_:release",
            ),
        ];
        for (group, id) in all {
            assert_eq!(group.to_string(), id);
            assert_eq!(id.parse::<GroupId>(), Ok(group));
        }
        assert_eq!(
            "refund:rf1:settle"
                .parse::<GroupId>()
                .unwrap()
                .out_refund_no(),
            Some("rf1")
        );
        assert_eq!(
            "payment:t1".parse::<GroupId>().unwrap().out_refund_no(),
            None
        );
    }

    #[test]
    fn malformed_group_ids_are_refused() {
        assert!(WALLET_LIKE.starts_with(WALLET_PREFIX));
        for bad in [
            "",
            "payment",
            "payment:",
            "wallet_pay:",
            "refund:",
            "refund::settle",
            "refund:rf1:",
            "refund:rf1:settled",
            "refund:rf1:reserve:x",
            "recharge:t1",
            "Payment:t1",
            "wallet:12345678-9abc-def0-1234-56789abcdef0",
        ] {
            assert!(bad.parse::<GroupId>().is_err(), "{bad:?}");
        }
    }
}
