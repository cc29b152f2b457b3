//! Reading an API v2 answer: `return_code`, then `sign`, then `result_code` (see the
//! client's module doc).

use super::*;

/// Answers are small; anything bigger is not WeChat.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A verified answer: its fields and the XML it came in.
pub(super) struct Answer {
    pub(super) fields: Fields,
    pub(super) evidence: LegacyEvidence,
}

/// Reads and checks an answer (see the module doc).
pub(super) fn read_answer(
    raw: &[u8],
    key: &ApiKey,
    sign_type: SignType,
) -> Result<Answer, V2Error> {
    let fields = xml::parse(raw, MAX_ANSWER_BYTES)?;
    if fields.get("return_code") != Some("SUCCESS") {
        return Err(V2Error::Refused(
            fields
                .get("return_msg")
                .unwrap_or("return_code is not SUCCESS")
                .to_owned(),
        ));
    }
    let given = fields
        .non_empty("sign")
        .ok_or_else(|| V2Error::Unverified("answer without sign".into()))?;
    if let Some(named) = fields.non_empty("sign_type") {
        if named != sign_type.as_str() {
            return Err(V2Error::Unverified(format!(
                "answer signed with {named}, not {}",
                sign_type.as_str()
            )));
        }
    }
    sign::verify(fields.iter(), key, sign_type, given)
        .map_err(|_| V2Error::Unverified("sign does not verify".into()))?;
    if fields.get("result_code") != Some("SUCCESS") {
        return Err(V2Error::Api {
            code: fields.non_empty("err_code").unwrap_or("FAIL").to_owned(),
            message: fields.get("err_code_des").unwrap_or_default().to_owned(),
        });
    }
    let body = String::from_utf8(raw.to_vec()).expect("the parser accepted it as UTF-8");
    Ok(Answer {
        fields,
        evidence: LegacyEvidence {
            body,
            sign_type: Some(sign_type.as_str().to_owned()),
            decrypted: None,
        },
    })
}
