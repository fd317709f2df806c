//! Response pins: which deployment created a Responses API response, so that
//! `previous_response_id` and `GET /v1/responses/{id}` reach the provider account that
//! holds it. Gateways are stateless, so with Redis the pin lives there — under the org's
//! hash tag, `<prefix>{org:<id>}:resp:<response id>`, with a TTL — and any gateway of the
//! region finds it; the key names the org, so one org can never find another's response.
//! Without Redis (standalone) pins live in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Ledgers;
use super::redis::RedisLedger;

/// How long a pin is kept: as long as OpenAI keeps a stored response by default.
pub const PIN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Most pins one standalone gateway keeps in memory.
const MEMORY_CAPACITY: usize = 100_000;

#[derive(Debug, thiserror::Error)]
#[error("the response pin store is unavailable: {0}")]
pub struct PinError(String);

#[derive(Debug, Default)]
pub struct Pins {
    memory: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl Pins {
    pub async fn pin(
        &self,
        ledger: &Ledgers,
        org: &str,
        response_id: &str,
        deployment_id: &str,
    ) -> Result<(), PinError> {
        match ledger {
            Ledgers::Redis(redis) => {
                let mut con = connection(redis)?;
                ::redis::cmd("SET")
                    .arg(key(redis, org, response_id))
                    .arg(deployment_id)
                    .arg("EX")
                    .arg(PIN_TTL.as_secs())
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| PinError(e.to_string()))
            }
            Ledgers::Memory(_) => {
                let mut memory = self.lock();
                let now = Instant::now();
                if memory.len() >= MEMORY_CAPACITY {
                    memory.retain(|_, (_, expires)| *expires > now);
                }
                if memory.len() < MEMORY_CAPACITY {
                    memory.insert(
                        (org.to_owned(), response_id.to_owned()),
                        (deployment_id.to_owned(), now + PIN_TTL),
                    );
                }
                Ok(())
            }
        }
    }

    /// The deployment that created `response_id` for `org`, if it is pinned.
    pub async fn pinned(
        &self,
        ledger: &Ledgers,
        org: &str,
        response_id: &str,
    ) -> Result<Option<String>, PinError> {
        match ledger {
            Ledgers::Redis(redis) => {
                let mut con = connection(redis)?;
                ::redis::cmd("GET")
                    .arg(key(redis, org, response_id))
                    .query_async(&mut con)
                    .await
                    .map_err(|e| PinError(e.to_string()))
            }
            Ledgers::Memory(_) => Ok(self
                .lock()
                .get(&(org.to_owned(), response_id.to_owned()))
                .filter(|(_, expires)| *expires > Instant::now())
                .map(|(deployment, _)| deployment.clone())),
        }
    }

    pub async fn unpin(
        &self,
        ledger: &Ledgers,
        org: &str,
        response_id: &str,
    ) -> Result<(), PinError> {
        match ledger {
            Ledgers::Redis(redis) => {
                let mut con = connection(redis)?;
                ::redis::cmd("DEL")
                    .arg(key(redis, org, response_id))
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| PinError(e.to_string()))
            }
            Ledgers::Memory(_) => {
                self.lock()
                    .remove(&(org.to_owned(), response_id.to_owned()));
                Ok(())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, Instant)>> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn connection(redis: &RedisLedger) -> Result<super::redis::Conn, PinError> {
    redis
        .connection()
        .ok_or_else(|| PinError("not connected".into()))
}

fn key(redis: &RedisLedger, org: &str, response_id: &str) -> String {
    format!("{}:resp:{response_id}", redis.tag(org))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pin_is_found_by_its_own_org_only() {
        let ledger = Ledgers::Memory(super::super::memory::MemoryLedger::default());
        let pins = Pins::default();
        pins.pin(&ledger, "o1", "resp_1", "dep-a").await.unwrap();
        assert_eq!(
            pins.pinned(&ledger, "o1", "resp_1")
                .await
                .unwrap()
                .as_deref(),
            Some("dep-a")
        );
        assert_eq!(pins.pinned(&ledger, "o2", "resp_1").await.unwrap(), None);
        pins.unpin(&ledger, "o1", "resp_1").await.unwrap();
        assert_eq!(pins.pinned(&ledger, "o1", "resp_1").await.unwrap(), None);
    }
}
