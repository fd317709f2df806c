//! AWS credentials and SigV4 request signing for Bedrock, through `aws-sigv4` (the AWS
//! SDK's own signer, without the SDK). A deployment's credential arrives as the text of a
//! shared credentials file (`[default]` with `aws_access_key_id`, `aws_secret_access_key`
//! and optionally `aws_session_token`): either a `file:` reference to such a file, or
//! built by the snapshot from the standard variables (see [`from_env_names`]).
//! Web-identity through STS is out of scope. Secrets are never logged.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use secrecy::{ExposeSecret, SecretString};

use super::ProviderError;

/// What a signature is for: a service in a region, at a time.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub time: SystemTime,
}

/// The key, secret and session token of one AWS identity.
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: SecretString,
    session_token: Option<SecretString>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The variables that go with `NAME` = `<prefix>ACCESS_KEY_ID`: the standard trio
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the same under
/// another prefix (`TOLLGATE_PROVIDER_AWS_ACCESS_KEY_ID`, …). `None` when `name` does not
/// end in `ACCESS_KEY_ID`.
pub fn from_env_names(name: &str) -> Option<(String, String)> {
    let prefix = name.strip_suffix("ACCESS_KEY_ID")?;
    Some((
        format!("{prefix}SECRET_ACCESS_KEY"),
        format!("{prefix}SESSION_TOKEN"),
    ))
}

/// A shared-credentials-file text for one identity (what [`AwsCredentials::parse`] reads).
pub fn credentials_file(key: &str, secret: &str, token: Option<&str>) -> String {
    let mut text =
        format!("[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n");
    if let Some(token) = token {
        text.push_str(&format!("aws_session_token = {token}\n"));
    }
    text
}

impl AwsCredentials {
    /// The `[default]` profile of a shared credentials file.
    pub fn parse(text: &str) -> Result<Self, ProviderError> {
        let mut in_default = false;
        let (mut key, mut secret, mut token) = (None, None, None);
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_default = line == "[default]";
                continue;
            }
            if !in_default || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_owned();
            match name.trim() {
                "aws_access_key_id" => key = Some(value),
                "aws_secret_access_key" => secret = Some(SecretString::from(value)),
                "aws_session_token" => token = Some(SecretString::from(value)),
                _ => {}
            }
        }
        match (key, secret) {
            (Some(access_key_id), Some(secret_access_key)) if !access_key_id.is_empty() => {
                Ok(Self {
                    access_key_id,
                    secret_access_key,
                    session_token: token,
                })
            }
            _ => Err(ProviderError::Credential(
                "the AWS credential has no [default] aws_access_key_id and aws_secret_access_key"
                    .into(),
            )),
        }
    }

    /// The headers that sign `method url` with `body` for `scope`
    /// (`authorization`, `x-amz-date`, and `x-amz-security-token` with a session token).
    /// `headers` are the request's other headers that are to be signed.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        scope: Scope<'_>,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let credentials = Credentials::new(
            &self.access_key_id,
            self.secret_access_key.expose_secret(),
            self.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            None,
            "tollgate",
        );
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(scope.region)
            .name(scope.service)
            .time(scope.time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|_| ProviderError::Credential("incomplete SigV4 parameters".into()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|_| ProviderError::Credential("the request cannot be signed".into()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|_| ProviderError::Credential("SigV4 signing failed".into()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::Value;

    use super::*;

    const SUITE: &str = include_str!("../../tests/fixtures/aws/sigv4-test-suite.json");

    #[test]
    fn signatures_match_the_published_sigv4_test_suite() {
        let suite: Value = serde_json::from_str(SUITE).unwrap();
        let text = credentials_file(
            suite["access_key_id"].as_str().unwrap(),
            suite["secret_access_key"].as_str().unwrap(),
            None,
        );
        let credentials = AwsCredentials::parse(&text).unwrap();
        // 20150830T123600Z
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let cases = suite["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let headers = credentials
                .sign(
                    case["method"].as_str().unwrap(),
                    case["url"].as_str().unwrap(),
                    &[("host", "example.amazonaws.com")],
                    case["body"].as_str().unwrap().as_bytes(),
                    Scope {
                        service: suite["service"].as_str().unwrap(),
                        region: suite["region"].as_str().unwrap(),
                        time,
                    },
                )
                .unwrap();
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(
                header("authorization"),
                case["authorization"].as_str(),
                "{}",
                case["name"]
            );
            assert_eq!(header("x-amz-date"), Some("20150830T123600Z"));
        }
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let text = credentials_file("AKID", "secret", Some("token-1"));
        let headers = AwsCredentials::parse(&text)
            .unwrap()
            .sign(
                "POST",
                "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
                &[],
                b"{}",
                Scope {
                    service: "bedrock",
                    region: "us-east-1",
                    time: SystemTime::now(),
                },
            )
            .unwrap();
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "x-amz-security-token" && v == "token-1")
        );
        let authorization = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(
            authorization.contains("x-amz-security-token"),
            "{authorization}"
        );
        assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    }

    #[test]
    fn credential_files_and_variable_names() {
        let text = "# comment\n[other]\naws_access_key_id = NOPE\n[default]\naws_access_key_id=AKID\naws_secret_access_key = s3cr3t\n";
        let parsed = AwsCredentials::parse(text).unwrap();
        assert_eq!(parsed.access_key_id, "AKID");
        assert!(!format!("{parsed:?}").contains("s3cr3t"));
        assert!(AwsCredentials::parse("[default]\naws_access_key_id = A\n").is_err());
        assert_eq!(
            from_env_names("AWS_ACCESS_KEY_ID"),
            Some(("AWS_SECRET_ACCESS_KEY".into(), "AWS_SESSION_TOKEN".into()))
        );
        assert_eq!(from_env_names("OPENAI_API_KEY"), None);
    }
}
