//! The definitions written after the data, read by the main session while the data worker
//! copies the rows: the sequences' `setval`; primary keys and unique constraints, indexes,
//! partition indexes attached, foreign keys and NOT VALID constraints, triggers (not the
//! partitions' clones) and their states, materialized views refreshed, row-level security,
//! policies and rules; comments, owners, privileges, column privileges; default privileges
//! last. They are kept in memory (the catalogs' size, never table data) and written after the
//! data and the large objects, in the same order as if read then.

use tokio_postgres::Client;

use super::behaviour;
use super::ddl::{self, Sequence};
use super::error::NativeError;
use super::event_triggers;
use super::inventory::Inventory;
use super::member_privileges;
use super::objects::{self, Constraint, Owned};
use super::output::SqlWriter;
use super::partitions;
use super::public_schema;
use super::publications;
use super::routines::{self, Routines};
use super::session::Snapshot;
use super::statistics;
use super::table_extras;
use super::table_marks;
use super::types::Types;

/// The oids of the objects of an export, by kind (the inventory's, some kinds merged).
#[derive(Debug)]
pub struct Oids {
    /// Schemas.
    pub schema: Vec<u32>,
    /// Plain functions.
    pub function: Vec<u32>,
    /// Tables and partitioned tables.
    pub table: Vec<u32>,
    /// Sequences.
    pub sequence: Vec<u32>,
    /// Views.
    pub view: Vec<u32>,
    /// Materialized views.
    pub matview: Vec<u32>,
    /// Triggers, and the triggers of constraint triggers.
    pub trigger: Vec<u32>,
    /// Indexes and partitioned indexes.
    pub index: Vec<u32>,
    /// Table constraints.
    pub constraint: Vec<u32>,
    /// Enum types.
    pub r#enum: Vec<u32>,
}

impl Oids {
    /// The oids of `inventory`'s objects; the constraint triggers' triggers read on `client`.
    pub async fn read(client: &Client, inventory: &Inventory) -> Result<Oids, NativeError> {
        let both = |a: &str, b: &str| [inventory.oids(a), inventory.oids(b)].concat();
        let mut trigger = inventory.oids("trigger");
        trigger.extend(
            objects::constraint_triggers(client, &inventory.oids("constraint trigger")).await?,
        );
        Ok(Oids {
            schema: inventory.oids("schema"),
            function: inventory.oids("function"),
            table: both("table", "partitioned table"),
            sequence: inventory.oids("sequence"),
            view: inventory.oids("view"),
            matview: inventory.oids("materialized view"),
            trigger,
            index: both("index", "partitioned index"),
            constraint: inventory.oids("table constraint"),
            r#enum: inventory.oids("enum type"),
        })
    }
}

/// What the export read and defined before the data, which the definitions after it use.
#[derive(Debug)]
pub struct Defined {
    /// The oids of what is defined, by kind.
    pub oids: Oids,
    /// The schemas.
    pub schemas: Vec<Owned>,
    /// The enum types.
    pub enums: Vec<Owned>,
    /// The functions.
    pub functions: Vec<Owned>,
    /// The procedures and aggregates.
    pub routines: Routines,
    /// The sequences, each with the column that owns it.
    pub sequences: Vec<(Sequence, Option<String>)>,
    /// The identity columns' sequences (their state is set with the others').
    pub identity_sequences: Vec<String>,
    /// The tables, in the order they were created (and are copied).
    pub tables: Vec<Owned>,
    /// The views.
    pub views: Vec<Owned>,
    /// The materialized views.
    pub matviews: Vec<Owned>,
    /// Views and materialized views, each after those it reads.
    pub order: Vec<u32>,
    /// The table constraints, as written.
    pub constraints: Vec<Constraint>,
    /// Collations aside, the user-defined types.
    pub user_types: Types,
}

/// Reads, on the main session of `snapshot`, the definitions written after the data.
pub async fn read(
    snapshot: &Snapshot<'_>,
    marker: &str,
    defined: &Defined,
) -> Result<SqlWriter, NativeError> {
    let client = snapshot.client;
    let inventory = &snapshot.inventory;
    let Defined {
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
    } = defined;
    let mut out = SqlWriter::in_memory();
    out.text(&ddl::batch_line(marker)).await?;
    let sequence_names = sequences.iter().map(|(s, _)| &s.name);
    for name in sequence_names.chain(identity_sequences) {
        let (last_value, is_called) = objects::sequence_state(client, name).await?;
        out.text(&ddl::setval(name, last_value, is_called)).await?;
    }
    out.text("\n").await?;

    out.text(&ddl::batch_line(marker)).await?;
    for key in constraints
        .iter()
        .filter(|k| matches!(k.contype.as_str(), "p" | "u" | "x"))
    {
        out.text(&key.statement).await?;
        out.text("\n").await?;
    }
    let indexes = objects::relations(client, &oids.index).await?;
    for index in &indexes {
        out.text(&format!("{};\n", index.definition)).await?;
    }
    out.text(&partitions::attach_indexes(client, &oids.table).await?)
        .await?;
    out.text(
        &statistics::create(
            client,
            snapshot.version,
            &inventory.oids("statistics object"),
        )
        .await?,
    )
    .await?;
    out.text(
        &publications::create(
            client,
            snapshot.version,
            &inventory.oids("publication"),
            &inventory.oids("publication relation"),
            &inventory.oids("publication namespace"),
        )
        .await?,
    )
    .await?;
    out.text(
        &table_marks::after_indexes(client, &[&oids.table[..], &oids.matview].concat()).await?,
    )
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
        partitions::without_trigger_clones(client, snapshot.version, &oids.trigger).await?;
    for trigger in objects::triggers(client, &own_triggers).await? {
        out.text(&trigger).await?;
        out.text("\n").await?;
    }
    out.text(&table_extras::trigger_states(client, &oids.trigger).await?)
        .await?;
    let populated = objects::populated(client, &oids.matview).await?;
    for oid in order.iter().filter(|oid| populated.contains(oid)) {
        if let Some(view) = matviews.iter().find(|v| v.oid == *oid) {
            out.text(&format!("REFRESH MATERIALIZED VIEW {};\n", view.name))
                .await?;
        }
    }
    behaviour::after_data(client, inventory, &mut out).await?;
    out.text(&table_marks::rule_states(client, &inventory.oids("rule")).await?)
        .await?;
    out.text("\n").await?;

    out.text(&ddl::batch_line(marker)).await?;
    let relation_oids: Vec<u32> = [
        &oids.table,
        &oids.sequence,
        &oids.view,
        &oids.matview,
        &oids.index,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect();
    for comment in objects::comments(
        client,
        &relation_oids,
        &oids.function,
        &oids.schema,
        &oids.constraint,
        &oids.r#enum,
        &oids.trigger,
    )
    .await?
    {
        out.text(&comment).await?;
        out.text("\n").await?;
    }

    out.text(&user_types.ownership()).await?;
    let sequence_rels = objects::relations(client, &oids.sequence).await?;
    let owned: [(&str, &str, &[Owned]); 7] = [
        ("SCHEMA", "pg_namespace", schemas),
        ("TYPE", "pg_type", enums),
        ("FUNCTION", "pg_proc", functions),
        ("TABLE", "pg_class", tables),
        ("SEQUENCE", "pg_class", &sequence_rels),
        ("VIEW", "pg_class", views),
        ("MATERIALIZED VIEW", "pg_class", matviews),
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
    routines::ownership(client, routines, &mut out).await?;
    member_privileges::write(client, &inventory.oids("extension"), &mut out).await?;
    out.text(&public_schema::export(client, snapshot.version).await?)
        .await?;
    behaviour::default_acls(client, inventory, &mut out).await?;
    out.text(
        &event_triggers::create(client, snapshot.version, &inventory.oids("event trigger")).await?,
    )
    .await?;
    out.text(&ddl::batch_line(marker)).await?;
    Ok(out)
}
