//! Each test gets its own Postgres database and Redis prefix, and leaves nothing behind.

use redis::AsyncCommands;
use tollgate_tests::env::{TestDb, TestEnv, TestRedis};

#[tokio::test]
async fn each_test_database_is_separate_and_dropped_afterwards() {
    let (a, b) = tokio::try_join!(TestDb::create(), TestDb::create()).unwrap();
    assert_ne!(a.name, b.name);
    assert!(a.name.starts_with("tg_test_"));

    let pool_a = a.pool().await.unwrap();
    sqlx::raw_sql("CREATE TABLE marker (id int); INSERT INTO marker VALUES (1)")
        .execute(&pool_a)
        .await
        .unwrap();
    let pool_b = b.pool().await.unwrap();
    let in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('marker')::text")
        .fetch_one(&pool_b)
        .await
        .unwrap();
    assert_eq!(
        in_b, None,
        "a table made in one test database must not appear in another"
    );

    let name = a.name.clone();
    pool_a.close().await;
    drop(a);
    assert!(
        !TestDb::exists(&name).await.unwrap(),
        "{name} still exists after drop"
    );
    assert!(TestDb::exists(&b.name).await.unwrap());
}

#[tokio::test]
async fn test_database_is_dropped_even_when_the_test_panics() {
    let (name_tx, name_rx) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let db = TestDb::create().await.unwrap();
        name_tx.send(db.name.clone()).unwrap();
        panic!("a failing test");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    let name = name_rx.await.unwrap();
    assert!(
        !TestDb::exists(&name).await.unwrap(),
        "{name} survived a panicking test"
    );
}

#[tokio::test]
async fn redis_prefixes_are_separate_and_cleaned_on_drop() {
    let (a, b) = tokio::try_join!(TestRedis::new(), TestRedis::new()).unwrap();
    assert_ne!(a.prefix, b.prefix);
    let mut connection = a.connection().await.unwrap();
    for i in 0..3 {
        let _: () = connection
            .set(format!("{}k{i}", a.prefix), i)
            .await
            .unwrap();
    }
    let _: () = connection
        .set(format!("{}k0", b.prefix), "b")
        .await
        .unwrap();
    assert_eq!(a.keys().await.unwrap().len(), 3);
    assert_eq!(b.keys().await.unwrap(), vec![format!("{}k0", b.prefix)]);

    let prefix_a = a.prefix.clone();
    drop(a);
    let left: Vec<String> = connection.keys(format!("{prefix_a}*")).await.unwrap();
    assert!(left.is_empty(), "keys left behind: {left:?}");
    let value: String = connection.get(format!("{}k0", b.prefix)).await.unwrap();
    assert_eq!(value, "b", "dropping one prefix must not touch another");
}

#[tokio::test]
async fn test_env_brings_up_database_redis_and_upstream_together() {
    let env = TestEnv::start().await.unwrap();
    assert!(TestDb::exists(&env.db.name).await.unwrap());
    assert!(env.redis.prefix.starts_with("tgtest:"));
    let models: serde_json::Value = crate::http()
        .get(format!("{}/models", env.upstream.openai_base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
}
