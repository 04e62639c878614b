//! The export of one database into plain SQL, in pg_dump's order: schemas, functions (bodies
//! unchecked), procedures and aggregates, sequences, tables with their columns, defaults, NOT
//! NULL (inheritance parents first), partitions attached, valid CHECKs, views (each after the
//! views it reads), OWNED BY; the data, streamed table by table with `COPY ... TO STDOUT` (none
//! of a partitioned table), and the large objects; the sequences' `setval`; then primary keys
//! and unique constraints, indexes, partition indexes attached, foreign keys and NOT VALID
//! constraints, triggers (not the partitions' clones), row-level security, policies and rules;
//! comments, owners, privileges; default privileges last. Partitions and inheritance: see
//! [`partitions`].

use futures_util::{pin_mut, TryStreamExt as _};

use super::behaviour;
use super::ddl::{self, COPY_END};
use super::error::{query, NativeError};
use super::extension_data;
use super::extensions;
use super::large_objects;
use super::member_privileges;
use super::objects::{self, Owned};
use super::output::SqlWriter;
use super::partitions;
use super::routines;
use super::session::Snapshot;
use super::table_extras;
use super::types;

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

/// Writes the database of `snapshot` into `out`; refused when its inventory has refusals.
pub async fn export(
    snapshot: &Snapshot<'_>,
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

    let schema_oids = inventory.oids("schema");
    let function_oids = inventory.oids("function");
    let mut table_oids = inventory.oids("table");
    table_oids.extend(inventory.oids("partitioned table"));
    let sequence_oids = inventory.oids("sequence");
    let view_oids = inventory.oids("view");
    let matview_oids = inventory.oids("materialized view");
    let trigger_oids = inventory.oids("trigger");
    let mut index_oids = inventory.oids("index");
    index_oids.extend(inventory.oids("partitioned index"));
    let constraint_oids = inventory.oids("table constraint");

    let enum_oids = inventory.oids("enum type");
    let schemas = objects::schemas(client, &schema_oids).await?;
    for schema in &schemas {
        out.text(&format!("CREATE SCHEMA {};\n\n", schema.name))
            .await?;
    }
    out.text(&extensions::extensions(client, &inventory.oids("extension")).await?)
        .await?;
    let collation_oids = inventory.oids("collation");
    out.text(&types::collations(client, snapshot.version, &collation_oids).await?)
        .await?;
    let enums = objects::enums(client, &enum_oids).await?;
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
    let functions = objects::functions(client, &function_oids).await?;
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
    let sequences = objects::sequences(client, &sequence_oids).await?;
    for (sequence, _) in &sequences {
        out.text(&ddl::create_sequence(sequence)).await?;
    }
    out.text(&user_types.domain_parts()).await?;
    let hierarchy = partitions::read(client, snapshot.version, &table_oids).await?;
    let tables = hierarchy.order(objects::relations(client, &table_oids).await?);
    let unlogged = table_extras::unlogged(client, &table_oids).await?;
    let mut columns = objects::columns(client, snapshot.version, &table_oids).await?;
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
    let fits = partitions::constraint_fits(client, snapshot.version, &constraint_oids).await?;
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
    let views = objects::relations(client, &view_oids).await?;
    let matviews = objects::relations(client, &matview_oids).await?;
    let all_views: Vec<u32> = view_oids.iter().chain(&matview_oids).copied().collect();
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

    let mut copied = 0;
    for table in &tables {
        let names: Vec<String> = columns
            .remove(&table.oid)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.generated)
            .map(|c| c.name)
            .collect();
        let Some(copy) = hierarchy.copy_query(table, &names) else {
            continue;
        };
        out.text(&ddl::section(marker, &format!("data of {}", table.name)))
            .await?;
        out.text(&ddl::copy_lines(marker, &table.name, &names))
            .await?;
        let stream = client
            .copy_out(&copy)
            .await
            .map_err(query("copying a table's rows"))?;
        pin_mut!(stream);
        while let Some(bytes) = stream
            .try_next()
            .await
            .map_err(query("copying a table's rows"))?
        {
            out.write(&bytes).await?;
        }
        out.text(COPY_END).await?;
        copied += 1;
    }
    copied += extension_data::export(
        client,
        snapshot.version,
        &inventory.oids("extension"),
        marker,
        &mut out,
    )
    .await?;
    large_objects::export(client, inventory, marker, &mut out).await?;
    out.text(&ddl::batch_line(marker)).await?;
    let sequence_names = sequences.iter().map(|(s, _)| &s.name);
    for name in sequence_names.chain(&identity_sequences) {
        let (last_value, is_called) = objects::sequence_state(client, name).await?;
        out.text(&ddl::setval(name, last_value, is_called)).await?;
    }
    out.text("\n").await?;

    out.text(&ddl::batch_line(marker)).await?;
    for key in constraints
        .iter()
        .filter(|k| matches!(k.contype.as_str(), "p" | "u"))
    {
        out.text(&key.statement).await?;
        out.text("\n").await?;
    }
    let indexes = objects::relations(client, &index_oids).await?;
    for index in &indexes {
        out.text(&format!("{};\n", index.definition)).await?;
    }
    out.text(&partitions::attach_indexes(client, &table_oids).await?)
        .await?;
    for late in constraints
        .iter()
        .filter(|k| k.contype == "f" || (k.contype == "c" && !k.validated))
    {
        out.text(&late.statement).await?;
        out.text("\n").await?;
    }
    out.text(&user_types.not_valid_checks()).await?;
    let own_triggers =
        partitions::without_trigger_clones(client, snapshot.version, &trigger_oids).await?;
    for trigger in objects::triggers(client, &own_triggers).await? {
        out.text(&trigger).await?;
        out.text("\n").await?;
    }
    out.text(&table_extras::trigger_states(client, &trigger_oids).await?)
        .await?;
    let populated = objects::populated(client, &matview_oids).await?;
    for oid in order.iter().filter(|oid| populated.contains(oid)) {
        if let Some(view) = matviews.iter().find(|v| v.oid == *oid) {
            out.text(&format!("REFRESH MATERIALIZED VIEW {};\n", view.name))
                .await?;
        }
    }
    behaviour::after_data(client, inventory, &mut out).await?;
    out.text("\n").await?;

    out.text(&ddl::batch_line(marker)).await?;
    let relation_oids: Vec<u32> = [
        &table_oids,
        &sequence_oids,
        &view_oids,
        &matview_oids,
        &index_oids,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect();
    for comment in objects::comments(
        client,
        &relation_oids,
        &function_oids,
        &schema_oids,
        &constraint_oids,
        &enum_oids,
        &trigger_oids,
    )
    .await?
    {
        out.text(&comment).await?;
        out.text("\n").await?;
    }

    out.text(&user_types.ownership()).await?;
    let sequence_rels = objects::relations(client, &sequence_oids).await?;
    let owned: [(&str, &str, &[Owned]); 7] = [
        ("SCHEMA", "pg_namespace", &schemas),
        ("TYPE", "pg_type", &enums),
        ("FUNCTION", "pg_proc", &functions),
        ("TABLE", "pg_class", &tables),
        ("SEQUENCE", "pg_class", &sequence_rels),
        ("VIEW", "pg_class", &views),
        ("MATERIALIZED VIEW", "pg_class", &matviews),
    ];
    for (object_type, _, list) in owned {
        for object in list {
            out.text(&format!(
                "ALTER {object_type} {} OWNER TO {};\n",
                object.name, object.owner
            ))
            .await?;
        }
    }
    for (object_type, catalog, list) in owned {
        let with_acl: Vec<u32> = list.iter().filter(|o| o.has_acl).map(|o| o.oid).collect();
        if with_acl.is_empty() {
            continue;
        }
        let grants = objects::grants(client, catalog, &with_acl).await?;
        let acl_type = match object_type {
            "VIEW" | "MATERIALIZED VIEW" => "TABLE",
            other => other,
        };
        for object in list.iter().filter(|o| o.has_acl) {
            let granted = grants.get(&object.oid).map(Vec::as_slice).unwrap_or(&[]);
            out.text(&ddl::privileges(
                acl_type,
                &object.name,
                &object.owner,
                granted,
            ))
            .await?;
        }
    }
    out.text(&table_extras::column_grants(client, &relation_oids).await?)
        .await?;
    routines::ownership(client, &routines, &mut out).await?;
    member_privileges::write(client, &inventory.oids("extension"), &mut out).await?;
    behaviour::default_acls(client, inventory, &mut out).await?;
    out.text(&ddl::batch_line(marker)).await?;
    out.text(&format!("\n{}\n", ddl::END_LINE)).await?;
    let bytes = out.finish().await?;
    Ok(ExportSummary {
        objects: inventory.objects.len(),
        tables: copied,
        bytes,
    })
}
