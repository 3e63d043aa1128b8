//! The workload shared by `site_generation` (IsolatedPg) and `site_generation_shared_pool` (one
//! global pool): the schema, its migrations, seeding, deterministic rendering, and the one
//! transaction that writes a site's pages.
#![allow(dead_code)] // each binary uses a different part

use std::time::Duration;

use clap::{Parser, ValueEnum};
use diesel::prelude::*;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use quern::{ErrorChain, redact_url};

/// The schema, applied to the first schema of the connection's `search_path`.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("examples/site_generation/migrations");

/// The queue both examples use.
pub const QUEUE: &str = "site_generation";

diesel::table! {
    sites (id) {
        id -> BigInt,
        name -> Text,
        page_count -> Integer,
        pages_written -> Integer,
        generations -> Integer,
    }
}

diesel::table! {
    pages (site_id, page_no) {
        site_id -> BigInt,
        page_no -> Integer,
        path -> Text,
        title -> Text,
        body -> Text,
        checksum -> BigInt,
    }
}

diesel::joinable!(pages -> sites (site_id));
diesel::allow_tables_to_appear_in_same_query!(sites, pages);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sites)]
pub struct Site {
    pub id: i64,
    pub name: String,
    pub page_count: i32,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = pages)]
pub struct Page {
    pub site_id: i64,
    pub page_no: i32,
    pub path: String,
    pub title: String,
    pub body: String,
    pub checksum: i64,
}

/// Which part of the demo this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Prepare the schema, enqueue the sites, work them, print a summary, clean up.
    All,
    /// Work the queue until SIGINT/SIGTERM (docker compose's `worker`).
    Worker,
    /// Prepare the schema, seed and enqueue the sites, exit (docker compose's `producer`).
    Producer,
}

#[derive(Debug, Parser)]
#[command(about = "Renders sites' pages from PostgreSQL, one Quern job per site")]
pub struct Args {
    /// How many sites to seed and generate.
    #[arg(long, default_value_t = 50)]
    pub sites: i64,
    /// Pages per site.
    #[arg(long, default_value_t = 20)]
    pub pages: i32,
    /// Jobs running at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value_t = Mode::All)]
    pub mode: Mode,
    /// PostgreSQL schema holding the tables. Default: a fresh schema per run in `all` mode
    /// (dropped at the end), `site_generation` otherwise (worker and producer must agree).
    #[arg(long)]
    pub schema: Option<String>,
    /// Redis key prefix. Default: a fresh prefix per run in `all` mode, `quern-site-generation`
    /// otherwise.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Keep the schema and the Redis keys of an `all` run.
    #[arg(long)]
    pub keep: bool,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/test"
    )]
    pub database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
}

impl Args {
    /// A name unique to this run: `<base>_<pid>_<ms>`.
    fn per_run(base: &str) -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!("{base}_{}_{}", std::process::id(), ms % 1_000_000_000)
    }

    pub fn schema(&self) -> String {
        match (&self.schema, self.mode) {
            (Some(s), _) => s.clone(),
            (None, Mode::All) => Self::per_run("site_gen"),
            (None, _) => "site_generation".into(),
        }
    }

    pub fn prefix(&self, base: &str) -> String {
        match (&self.prefix, self.mode) {
            (Some(p), _) => p.clone(),
            (None, Mode::All) => Self::per_run(base).replace('_', "-"),
            (None, _) => base.into(),
        }
    }
}

/// `url` with its connections' `search_path` set to `schema` (libpq's `options` parameter).
pub fn schema_url(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A schema name safe to splice into SQL.
pub fn check_schema(schema: &str) -> Result<(), String> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schema {schema:?}: use lowercase letters, digits and '_' only"
        ))
    }
}

/// Connects once (bounded), failing with a message that names the server, password redacted,
/// and keeps the driver's whole error chain (diesel's own `establish` flattens it to one line).
pub async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    let shown = redact_url(url.split('?').next().unwrap_or(url));
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot connect to PostgreSQL at {shown}: {}",
                ErrorChain::of(&e)
            ));
        }
        Err(_) => {
            return Err(format!(
                "cannot connect to PostgreSQL at {shown}: no answer within 10 s"
            ));
        }
    };
    AsyncPgConnection::try_from_client_and_connection(client, connection)
        .await
        .map_err(|e| format!("setting up the connection to {shown}: {e}"))
}

/// Creates the schema and runs the embedded migrations in it. Needs a multi-thread runtime
/// (`AsyncMigrationHarness` uses `block_in_place`).
pub async fn migrate(base_url: &str, schema: &str) -> Result<(), String> {
    check_schema(schema)?;
    let mut conn = connect(&schema_url(base_url, schema)).await?;
    conn.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
        .map_err(|e| format!("creating schema {schema}: {e}"))?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| format!("running migrations in schema {schema}: {e}"))?;
    if !applied.is_empty() {
        println!("migrations applied in schema {schema}: {}", applied.len());
    }
    Ok(())
}

/// Replaces the sites with `count` fresh ones of `pages` pages each.
pub async fn seed(conn: &mut AsyncPgConnection, count: i64, pages: i32) -> QueryResult<()> {
    conn.batch_execute("TRUNCATE sites, pages").await?;
    let rows: Vec<_> = (1..=count)
        .map(|id| {
            (
                sites::id.eq(id),
                sites::name.eq(format!("site-{id:04}")),
                sites::page_count.eq(pages),
            )
        })
        .collect();
    for chunk in rows.chunks(1000) {
        diesel::insert_into(sites::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// FNV-1a: a stable checksum, the same on every run and platform.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The page `page_no` of `site`: the same input always renders the same bytes.
pub fn render(site: &Site, page_no: i32) -> Page {
    const WORDS: [&str; 12] = [
        "queue", "worker", "lease", "retry", "pool", "runtime", "page", "render", "commit", "redis",
        "postgres", "job",
    ];
    let mut state = fnv1a(&format!("{}:{page_no}", site.id));
    let mut body = format!("# {} / page {page_no}\n\n", site.name);
    for sentence in 0..8 {
        for word in 0..10 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if word > 0 {
                body.push(' ');
            }
            body.push_str(WORDS[(state >> 33) as usize % WORDS.len()]);
        }
        body.push_str(if sentence % 4 == 3 { ".\n\n" } else { ". " });
    }
    Page {
        site_id: site.id,
        page_no,
        path: format!("/{}/{page_no:03}.html", site.name),
        title: format!("{} — page {page_no}", site.name),
        checksum: fnv1a(&body) as i64,
        body,
    }
}

/// Reads the site, renders its pages, and replaces them in one transaction: readers see the old
/// pages or the new ones, never a mix. Returns the number of pages written.
pub async fn generate(conn: &mut AsyncPgConnection, site_id: i64) -> QueryResult<usize> {
    let site: Site = sites::table
        .find(site_id)
        .select(Site::as_select())
        .first(conn)
        .await?;
    let pages: Vec<Page> = (1..=site.page_count).map(|n| render(&site, n)).collect();
    let count = pages.len();
    conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
        diesel::delete(pages::table.filter(pages::site_id.eq(site_id)))
            .execute(conn)
            .await?;
        diesel::insert_into(pages::table)
            .values(&pages)
            .execute(conn)
            .await?;
        diesel::update(sites::table.find(site_id))
            .set((
                sites::pages_written.eq(count as i32),
                sites::generations.eq(sites::generations + 1),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    Ok(count)
}

/// Pages in the schema.
pub async fn pages_written(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    pages::table.count().get_result(conn).await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Backends whose `application_name` starts with `prefix`, polled until 0 or `limit` passes.
pub async fn connections_left(
    conn: &mut AsyncPgConnection,
    prefix: &str,
    limit: Duration,
) -> QueryResult<i64> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let n = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity
             WHERE left(application_name, length($1)) = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<diesel::sql_types::Text, _>(prefix)
        .get_result::<Count>(conn)
        .await?
        .n;
        if n == 0 || std::time::Instant::now() >= deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drops the per-run schema.
pub async fn drop_schema(conn: &mut AsyncPgConnection, schema: &str) -> QueryResult<()> {
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
}

/// Runs `worker` until `total` jobs of `keys`' queue are settled (completed or dead) or `limit`
/// passes, then stops it. Returns the final stats, the time it took, and the worker's report.
pub async fn run_until_settled(
    worker: quern::Worker,
    storage: &quern::Storage,
    keys: &quern::parts::redis::QueueKeys,
    total: u64,
    limit: Duration,
) -> Result<(quern::QueueStats, Duration, quern::WorkerReport), String> {
    let started = std::time::Instant::now();
    let stop = quern::Shutdown::new();
    let signal = stop.clone();
    let running = tokio::spawn(worker.run(async move { signal.wait().await }));
    let deadline = started + limit;
    let stats = loop {
        let stats = storage
            .stats(keys)
            .await
            .map_err(|e| format!("reading queue stats: {}", ErrorChain::of(&e)))?;
        if stats.completed + stats.dead >= total || std::time::Instant::now() >= deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    stop.trigger();
    let report = running
        .await
        .map_err(|e| format!("worker task: {e}"))?
        .map_err(|e| ErrorChain::of(&e).to_string())?;
    Ok((stats, elapsed, report))
}
