//! The export of one database into plain SQL, in pg_dump's order: schemas, functions (bodies
//! unchecked), procedures and aggregates, sequences, tables with their columns, defaults, NOT
//! NULL (inheritance parents first), partitions attached, valid CHECKs, views (each after the
//! views it reads), OWNED BY; the data, streamed table by table with `COPY ... TO STDOUT` (none
//! of a partitioned table) by the data worker ([`worker`]) in the main session's snapshot, and
//! the large objects; then the definitions the main session read while the rows streamed
//! ([`post_data`]): the sequences' `setval`, keys, indexes, foreign keys, triggers, row-level
//! security, policies and rules, comments, owners, privileges, default privileges last.
//! Partitions and inheritance: see [`partitions`].

use super::column_props;
use super::ddl;
use super::error::NativeError;
use super::extension_data;
use super::extensions;
use super::large_objects;
use super::objects;
use super::output::SqlWriter;
use super::partitions;
use super::post_data;
use super::routines;
use super::session::Snapshot;
use super::table_extras;
use super::types;
use super::worker::Worker;

/// A marker no text of the database can know in advance: 16 random bytes, in hex.
fn new_marker() -> Result<String, NativeError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(NativeError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What one export wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Objects written (the inventory's accepted objects).
    pub objects: usize,
    /// Tables whose data was copied.
    pub tables: usize,
    /// Bytes of SQL written.
    pub bytes: u64,
}

/// Writes the database of `snapshot` into `out`, its rows copied by `worker` (opened in that
/// snapshot); refused when its inventory has refusals.
pub async fn export(
    snapshot: &Snapshot<'_>,
    worker: &Worker<'_>,
    dbname: &str,
    mut out: SqlWriter,
) -> Result<ExportSummary, NativeError> {
    let inventory = &snapshot.inventory;
    if !inventory.refusals.is_empty() {
        return Err(NativeError::Refused(inventory.refusals.clone()));
    }
    let client = snapshot.client;
    let marker = new_marker()?;
    let marker = marker.as_str();
    out.text(&ddl::preamble(
        dbname,
        snapshot.version,
        &snapshot.encoding,
        marker,
    ))
    .await?;

    let oids = post_data::Oids::read(client, inventory).await?;
    let schemas = objects::schemas(client, &oids.schema).await?;
    for schema in &schemas {
        out.text(&format!("CREATE SCHEMA {};\n\n", schema.name))
            .await?;
    }
    out.text(&extensions::extensions(client, &inventory.oids("extension")).await?)
        .await?;
    let collation_oids = inventory.oids("collation");
    out.text(&types::collations(client, snapshot.version, &collation_oids).await?)
        .await?;
    let enums = objects::enums(client, &oids.r#enum).await?;
    for enum_type in &enums {
        out.text(&enum_type.definition).await?;
    }
    let user_types = types::read(
        client,
        snapshot.version,
        &[
            inventory.oids("domain"),
            inventory.oids("composite type"),
            inventory.oids("range type"),
        ]
        .concat(),
        &inventory.oids("domain constraint"),
    )
    .await?;
    out.text(&user_types.creates()).await?;
    let functions = objects::functions(client, &oids.function).await?;
    for function in &functions {
        out.text(&ddl::section(
            marker,
            &format!("function {}", function.name),
        ))
        .await?;
        out.text(function.definition.trim_end()).await?;
        out.text(";\n\n").await?;
    }
    let routines = routines::create(client, snapshot.version, inventory, marker, &mut out).await?;
    let sequences = objects::sequences(client, &oids.sequence).await?;
    for (sequence, _) in &sequences {
        out.text(&ddl::create_sequence(sequence)).await?;
    }
    out.text(&user_types.domain_parts()).await?;
    let hierarchy = partitions::read(client, snapshot.version, &oids.table).await?;
    let tables = hierarchy.order(objects::relations(client, &oids.table).await?);
    let unlogged = table_extras::unlogged(client, &oids.table).await?;
    let columns = objects::columns(client, snapshot.version, &oids.table).await?;
    // Identity columns' sequences: their state is set with the others'.
    let identity_sequences: Vec<String> = columns
        .values()
        .flatten()
        .filter_map(|c| c.identity.as_ref().map(|(_, s)| s.name.clone()))
        .collect();
    for table in &tables {
        out.text(&ddl::section(marker, &format!("table {}", table.name)))
            .await?;
        let create = hierarchy.create_table(table, &columns);
        out.text(&table_extras::persistence(
            create,
            unlogged.contains(&table.oid),
        ))
        .await?;
    }
    out.text(&hierarchy.attach_partitions(&tables)).await?;
    out.text(&column_props::alter_columns(client, snapshot.version, &oids.table).await?)
        .await?;
    let fits = partitions::constraint_fits(client, snapshot.version, &oids.constraint).await?;
    let mut constraints = objects::constraints(client, &fits.written).await?;
    fits.apply(&mut constraints);
    for check in constraints
        .iter()
        .filter(|k| k.contype == "c" && k.validated)
    {
        out.text(&check.statement).await?;
        out.text("\n").await?;
    }
    // Views and materialized views in one order: each after those it reads.
    let views = objects::relations(client, &oids.view).await?;
    let matviews = objects::relations(client, &oids.matview).await?;
    let all_views: Vec<u32> = oids.view.iter().chain(&oids.matview).copied().collect();
    let order = ddl::view_order(
        &all_views,
        &objects::view_dependencies(client, &all_views).await?,
    );
    for oid in &order {
        let (view, materialized) = match views.iter().find(|v| v.oid == *oid) {
            Some(view) => (view, false),
            None => match matviews.iter().find(|v| v.oid == *oid) {
                Some(view) => (view, true),
                None => continue,
            },
        };
        out.text(&ddl::create_view(
            &view.name,
            &view.options,
            &view.definition,
            materialized,
        ))
        .await?;
    }
    out.text("\n").await?;
    for (sequence, owned_by) in &sequences {
        if let Some(column) = owned_by {
            out.text(&format!(
                "ALTER SEQUENCE {} OWNED BY {column};\n",
                sequence.name
            ))
            .await?;
        }
    }

    // The data, on the worker; meanwhile this session reads the definitions written after it.
    let defined = post_data::Defined {
        oids,
        schemas,
        enums,
        functions,
        routines,
        sequences,
        identity_sequences,
        tables,
        views,
        matviews,
        order,
        constraints,
        user_types,
    };
    let (mut copied, definitions) = tokio::try_join!(
        worker.copy(&defined.tables, &columns, &hierarchy, marker, &mut out),
        post_data::read(snapshot, marker, &defined),
    )?;
    copied += extension_data::export(
        client,
        snapshot.version,
        &inventory.oids("extension"),
        marker,
        &mut out,
    )
    .await?;
    large_objects::export(client, inventory, marker, &mut out).await?;
    out.append(definitions).await?;
    out.text(&format!("\n{}\n", ddl::END_LINE)).await?;
    let bytes = out.finish().await?;
    Ok(ExportSummary {
        objects: inventory.objects.len(),
        tables: copied,
        bytes,
    })
}
