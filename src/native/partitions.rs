//! Partitioned tables, partitions and inheritance in a native export, as pg_dump writes them:
//! a partition is created as a table of its own (all its columns, in its own order, its own
//! defaults and NOT NULLs) and attached with its bound once every table exists; an inheritance
//! child is created with `INHERITS` and only its local columns, then the defaults and NOT NULLs
//! of its inherited columns set on it alone. Inherited CHECKs and the clones of foreign keys
//! and triggers are not written: the parent's own statement recurses and makes them. Rows are
//! copied per table (`COPY ... TO` never reads a child's rows); never from a partitioned
//! table. Partition indexes are attached to their parent's after the keys and indexes.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::ddl::{self, Column};
use super::error::{query, NativeError};
use super::objects::{read_rows, Constraint, Owned};
use crate::server::ServerVersion;

/// Where a table stands in its hierarchy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// Its parents' oids, in `inhseqno` order (one for a partition).
    pub parents: Vec<u32>,
    /// Its parents' quoted names, in the same order.
    pub parent_names: Vec<String>,
    /// A partition's bound (`FOR VALUES ...` or `DEFAULT`).
    pub bound: Option<String>,
    /// A partitioned table's key (`RANGE (i)`).
    pub key: Option<String>,
    /// Whether some table inherits from it or is its partition.
    pub has_children: bool,
}

/// What a column of a table in a hierarchy needs beyond [`Column`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnPlace {
    /// `attislocal`: defined by the table itself, not only inherited.
    pub local: bool,
    /// The table's own NOT NULL (18: a local not-null constraint; before: `attnotnull`).
    pub not_null_local: bool,
    /// The not-null constraint's quoted name, when not the default one (18).
    pub not_null_name: Option<String>,
}

/// The hierarchy of the exported tables.
#[derive(Clone, Debug, Default)]
pub struct Hierarchy {
    /// Per table oid.
    pub places: HashMap<u32, Place>,
    /// Per (table oid, quoted column name).
    pub columns: HashMap<(u32, String), ColumnPlace>,
}

/// The place of each table of `$1` (10+ has `relispartition`, `relpartbound`, partition keys).
pub const PLACES_SQL: &str = "SELECT c.oid, \
    coalesce((SELECT pg_catalog.array_agg(h.inhparent ORDER BY h.inhseqno) \
      FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid), '{}'), \
    coalesce((SELECT pg_catalog.array_agg(h.inhparent::pg_catalog.regclass::text \
      ORDER BY h.inhseqno) FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid), '{}'), \
    CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END, \
    CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END, \
    EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhparent = c.oid) \
    FROM pg_catalog.pg_class c WHERE c.oid = ANY($1)";

/// The columns of the tables of `$1`: local or inherited, and their own NOT NULL (18 keeps
/// not-null constraints, local or inherited, named after the table that made them).
pub fn column_places_sql(version: ServerVersion) -> String {
    let (local, name) = match version.num() >= 180000 {
        true => (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = a.attrelid \
             AND k.contype = 'n' AND k.conkey[1] = a.attnum AND k.conislocal)",
            "(SELECT pg_catalog.quote_ident(k.conname) FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class r ON r.oid = k.conrelid WHERE k.conrelid = a.attrelid \
             AND k.contype = 'n' AND k.conkey[1] = a.attnum \
             AND k.conname <> r.relname || '_' || a.attname || '_not_null')",
        ),
        false => ("a.attnotnull", "NULL::text"),
    };
    format!(
        "SELECT a.attrelid, pg_catalog.quote_ident(a.attname), a.attislocal, {local}, {name} \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped"
    )
}

/// Reads the hierarchy of `tables`.
pub async fn read(
    client: &Client,
    version: ServerVersion,
    tables: &[u32],
) -> Result<Hierarchy, NativeError> {
    let what = "reading partitions and inheritance";
    let list = tables.to_vec();
    let mut hierarchy = Hierarchy::default();
    for row in client
        .query(PLACES_SQL, &[&list])
        .await
        .map_err(query(what))?
    {
        let place = Place {
            parents: row.try_get(1).map_err(query(what))?,
            parent_names: row.try_get(2).map_err(query(what))?,
            bound: row.try_get(3).map_err(query(what))?,
            key: row.try_get(4).map_err(query(what))?,
            has_children: row.try_get(5).map_err(query(what))?,
        };
        hierarchy
            .places
            .insert(row.try_get(0).map_err(query(what))?, place);
    }
    for row in client
        .query(&column_places_sql(version), &[&list])
        .await
        .map_err(query(what))?
    {
        let column = ColumnPlace {
            local: row.try_get(2).map_err(query(what))?,
            not_null_local: row.try_get(3).map_err(query(what))?,
            not_null_name: row.try_get(4).map_err(query(what))?,
        };
        let key = (
            row.try_get(0).map_err(query(what))?,
            row.try_get(1).map_err(query(what))?,
        );
        hierarchy.columns.insert(key, column);
    }
    Ok(hierarchy)
}

impl Hierarchy {
    fn place(&self, oid: u32) -> Place {
        self.places.get(&oid).cloned().unwrap_or_default()
    }

    /// An inheritance child (not a partition).
    fn inherits(&self, oid: u32) -> bool {
        let place = self.place(oid);
        !place.parents.is_empty() && place.bound.is_none()
    }

    /// The tables in an order where each inheritance parent comes before its children.
    pub fn order(&self, tables: Vec<Owned>) -> Vec<Owned> {
        let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
        let parents: Vec<(u32, u32)> = oids
            .iter()
            .filter(|oid| self.inherits(**oid))
            .flat_map(|oid| self.place(*oid).parents.into_iter().map(|p| (*oid, p)))
            .collect();
        let mut by_oid: HashMap<u32, Owned> = tables.into_iter().map(|t| (t.oid, t)).collect();
        ddl::view_order(&oids, &parents)
            .into_iter()
            .filter_map(|oid| by_oid.remove(&oid))
            .collect()
    }

    /// One column's line: NOT NULL named as in the source where its name is not the default.
    fn column_line(&self, table: u32, column: &Column, not_null: bool) -> String {
        let name = self
            .columns
            .get(&(table, column.name.clone()))
            .and_then(|c| c.not_null_name.clone());
        let plain = Column {
            not_null: not_null && name.is_none(),
            ..column.clone()
        };
        match (not_null, name) {
            (true, Some(name)) => {
                format!("{} CONSTRAINT {name} NOT NULL", ddl::column_line(&plain))
            }
            _ => ddl::column_line(&plain),
        }
    }

    /// The `CREATE TABLE` of `table` (columns of every table in `columns`): a partition or a
    /// table outside any inheritance with all its columns, a partitioned table with its key;
    /// an inheritance child with its local columns and `INHERITS`, then its inherited columns'
    /// defaults and NOT NULLs set on it alone.
    pub fn create_table(&self, table: &Owned, columns: &HashMap<u32, Vec<Column>>) -> String {
        let own = columns.get(&table.oid).map(Vec::as_slice).unwrap_or(&[]);
        let place = self.place(table.oid);
        let key = place
            .key
            .as_ref()
            .map(|key| format!(" PARTITION BY {key}"))
            .unwrap_or_default();
        if !self.inherits(table.oid) {
            let lines: Vec<String> = own
                .iter()
                .map(|c| self.column_line(table.oid, c, c.not_null))
                .collect();
            return ddl::table_statement(&table.name, &lines, &key, &table.options);
        }
        let column_place = |c: &Column| {
            self.columns
                .get(&(table.oid, c.name.clone()))
                .cloned()
                .unwrap_or_default()
        };
        let lines: Vec<String> = own
            .iter()
            .filter(|c| column_place(c).local)
            .map(|c| self.column_line(table.oid, c, column_place(c).not_null_local))
            .collect();
        let inherits = format!(" INHERITS ({}){key}", place.parent_names.join(", "));
        let mut sql = ddl::table_statement(&table.name, &lines, &inherits, &table.options);
        for column in own.iter().filter(|c| !column_place(c).local) {
            let alter = format!(
                "ALTER TABLE ONLY {} ALTER COLUMN {}",
                table.name, column.name
            );
            let parents_default = place.parents.iter().any(|parent| {
                columns
                    .get(parent)
                    .into_iter()
                    .flatten()
                    .any(|p| p.name == column.name && p.default.is_some() && !p.generated)
            });
            match (&column.default, column.generated) {
                (Some(default), false) => {
                    sql.push_str(&format!("{alter} SET DEFAULT {default};\n"))
                }
                (None, false) if parents_default => {
                    sql.push_str(&format!("{alter} DROP DEFAULT;\n"))
                }
                _ => {}
            }
            if column_place(column).not_null_local {
                sql.push_str(&format!("{alter} SET NOT NULL;\n"));
            }
        }
        sql
    }

    /// `ALTER TABLE ONLY parent ATTACH PARTITION ...` of each partition among `tables`.
    pub fn attach_partitions(&self, tables: &[Owned]) -> String {
        let mut sql = String::new();
        for table in tables {
            let place = self.place(table.oid);
            if let (Some(bound), Some(parent)) = (&place.bound, place.parent_names.first()) {
                sql.push_str(&format!(
                    "ALTER TABLE ONLY {parent} ATTACH PARTITION {} {bound};\n",
                    table.name
                ));
            }
        }
        if !sql.is_empty() {
            sql.push('\n');
        }
        sql
    }

    /// The query that copies `table`'s own rows (columns `names`): none for a partitioned
    /// table (it has none; `COPY` refuses it). An inheritance parent's is a plain `COPY`:
    /// `COPY ... TO` never reads a child's rows ("the same rows as `SELECT * FROM ONLY`", in
    /// PostgreSQL's COPY page, 10 to 18), and is faster than `COPY (SELECT ...)`.
    pub fn copy_query(&self, table: &Owned, names: &[String]) -> Option<String> {
        match self.place(table.oid).key {
            Some(_) => None,
            None => Some(ddl::copy_to_stdout(&table.name, names)),
        }
    }
}

/// What becomes of a constraint in the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Written as read: `ALTER TABLE ONLY`.
    Only,
    /// Written without `ONLY`: it recurses to the children and makes their inherited copies.
    Recursive,
    /// Not written: made by its parent's statement (an inherited CHECK, a foreign key's clone).
    Made,
}

/// How a constraint fits: `contype`, a clone (`conparentid`), inherited only (`coninhcount`
/// and not `conislocal`), `NO INHERIT`, on a partitioned table, on a table with children.
pub fn fit(
    contype: &str,
    clone: bool,
    inherited_only: bool,
    no_inherit: bool,
    on_partitioned: bool,
    has_children: bool,
) -> Fit {
    match contype {
        "f" if clone => Fit::Made,
        "f" if on_partitioned => Fit::Recursive,
        "c" if inherited_only => Fit::Made,
        "c" if has_children && !no_inherit => Fit::Recursive,
        _ => Fit::Only,
    }
}

/// Per constraint of `$1`: its oid, how it fits (see [`fit`]), and the start of its
/// statement (as `objects::constraints` writes it); `conparentid` from 11 on.
pub fn constraint_fits_sql(version: ServerVersion) -> String {
    let parent = match version.num() >= 110000 {
        true => "k.conparentid",
        false => "0::pg_catalog.oid",
    };
    format!(
        "SELECT k.oid, k.contype::text, {parent} <> 0, k.coninhcount > 0 AND NOT k.conislocal, \
         k.connoinherit, r.relkind = 'p', \
         EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhparent = k.conrelid), \
         pg_catalog.format('ALTER TABLE ONLY %s ADD CONSTRAINT %I ', \
           k.conrelid::pg_catalog.regclass, k.conname) \
         FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class r ON r.oid = k.conrelid \
         WHERE k.oid = ANY($1) ORDER BY k.oid"
    )
}

/// The constraints to write, and which of them recurse.
#[derive(Clone, Debug, Default)]
pub struct ConstraintFits {
    /// The oids of the constraints written.
    pub written: Vec<u32>,
    /// The statement starts (`ALTER TABLE ONLY t ADD CONSTRAINT c `) of those that recurse.
    pub recursive: Vec<String>,
}

impl ConstraintFits {
    /// Drops `ONLY` from the statements of the constraints that recurse.
    pub fn apply(&self, constraints: &mut [Constraint]) {
        for constraint in constraints.iter_mut() {
            if let Some(start) = self
                .recursive
                .iter()
                .find(|start| constraint.statement.starts_with(start.as_str()))
            {
                let rest = &constraint.statement[start.len()..];
                let head = start.replacen("ALTER TABLE ONLY ", "ALTER TABLE ", 1);
                constraint.statement = format!("{head}{rest}");
            }
        }
    }
}

/// Reads how each constraint of `list` fits.
pub async fn constraint_fits(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
) -> Result<ConstraintFits, NativeError> {
    let what = "reading inherited constraints";
    let mut fits = ConstraintFits::default();
    for row in client
        .query(&constraint_fits_sql(version), &[&list.to_vec()])
        .await
        .map_err(query(what))?
    {
        let contype: String = row.try_get(1).map_err(query(what))?;
        let how = fit(
            &contype,
            row.try_get(2).map_err(query(what))?,
            row.try_get(3).map_err(query(what))?,
            row.try_get(4).map_err(query(what))?,
            row.try_get(5).map_err(query(what))?,
            row.try_get(6).map_err(query(what))?,
        );
        if how != Fit::Made {
            fits.written.push(row.try_get(0).map_err(query(what))?);
        }
        if how == Fit::Recursive {
            fits.recursive.push(row.try_get(7).map_err(query(what))?);
        }
    }
    Ok(fits)
}

/// The triggers of `$1` that are clones of a partitioned table's (made again by its `CREATE
/// TRIGGER`): `tgparentid` from 13 on, a dependency on a trigger in 11 (`I`) and 12 (`P`);
/// none in 10.
pub fn trigger_clones_sql(version: ServerVersion) -> &'static str {
    match version.num() {
        130000.. => {
            "SELECT g.oid FROM pg_catalog.pg_trigger g \
             WHERE g.oid = ANY($1) AND g.tgparentid <> 0"
        }
        110000.. => {
            "SELECT g.oid FROM pg_catalog.pg_trigger g WHERE g.oid = ANY($1) AND EXISTS \
             (SELECT 1 FROM pg_catalog.pg_depend d \
              WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid = g.oid \
              AND d.refclassid = 'pg_catalog.pg_trigger'::pg_catalog.regclass \
              AND d.deptype IN ('I', 'P'))"
        }
        _ => "SELECT g.oid FROM pg_catalog.pg_trigger g WHERE g.oid = ANY($1) AND false",
    }
}

/// The triggers of `list` but the clones (see [`trigger_clones_sql`]).
pub async fn without_trigger_clones(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
) -> Result<Vec<u32>, NativeError> {
    let clones: Vec<u32> = read_rows(
        client,
        trigger_clones_sql(version),
        &[&list.to_vec()],
        "reading the partitions' triggers",
        |row| row.try_get(0),
    )
    .await?;
    Ok(list
        .iter()
        .copied()
        .filter(|oid| !clones.contains(oid))
        .collect())
}

/// `ALTER INDEX parent ATTACH PARTITION child` for each partition index of the tables of `$1`
/// (those of keys too), leaves first; pg_inherits holds indexes from 11 on (none in 10).
pub const INDEX_ATTACH_SQL: &str =
    "SELECT pg_catalog.format('ALTER INDEX %s ATTACH PARTITION %s;', \
    h.inhparent::pg_catalog.regclass, h.inhrelid::pg_catalog.regclass) \
    FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_index x ON x.indexrelid = h.inhrelid \
    WHERE x.indrelid = ANY($1) \
    ORDER BY EXISTS (SELECT 1 FROM pg_catalog.pg_inherits c WHERE c.inhparent = h.inhrelid), \
    h.inhrelid";

/// The `ALTER INDEX ... ATTACH PARTITION` statements of the tables of `tables`.
pub async fn attach_indexes(client: &Client, tables: &[u32]) -> Result<String, NativeError> {
    let what = "reading the partition indexes";
    let mut sql = String::new();
    for row in client
        .query(INDEX_ATTACH_SQL, &[&tables.to_vec()])
        .await
        .map_err(query(what))?
    {
        sql.push_str(&row.try_get::<_, String>(0).map_err(query(what))?);
        sql.push('\n');
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, default: Option<&str>, not_null: bool) -> Column {
        Column {
            name: name.into(),
            type_name: "integer".into(),
            collation: None,
            not_null,
            default: default.map(String::from),
            generated: false,
            identity: None,
        }
    }

    fn table(oid: u32, name: &str) -> Owned {
        Owned {
            oid,
            name: name.into(),
            owner: "o".into(),
            has_acl: false,
            definition: String::new(),
            options: Vec::new(),
        }
    }

    fn hierarchy() -> Hierarchy {
        let mut h = Hierarchy::default();
        h.places.insert(
            1,
            Place {
                key: Some("RANGE (i)".into()),
                has_children: true,
                ..Place::default()
            },
        );
        h.places.insert(
            2,
            Place {
                parents: vec![1],
                parent_names: vec!["public.p".into()],
                bound: Some("FOR VALUES FROM (0) TO (10)".into()),
                ..Place::default()
            },
        );
        h.places.insert(
            3,
            Place {
                has_children: true,
                ..Place::default()
            },
        );
        h.places.insert(
            4,
            Place {
                parents: vec![3, 5],
                parent_names: vec!["public.par".into(), "public.other".into()],
                ..Place::default()
            },
        );
        let local = |local, not_null_local, name: Option<&str>| ColumnPlace {
            local,
            not_null_local,
            not_null_name: name.map(String::from),
        };
        h.columns
            .insert((2, "i".into()), local(false, false, Some("p_i_not_null")));
        h.columns.insert((4, "a".into()), local(false, true, None));
        h.columns.insert((4, "b".into()), local(false, false, None));
        h.columns.insert((4, "c".into()), local(true, false, None));
        h.columns.insert((4, "d".into()), local(true, true, None));
        h
    }

    #[test]
    fn partitions_are_tables_of_their_own_attached_with_their_bound() {
        let h = hierarchy();
        let columns = HashMap::from([
            (1, vec![column("i", None, true)]),
            (2, vec![column("i", Some("7"), true)]),
        ]);
        assert_eq!(
            h.create_table(&table(1, "public.p"), &columns),
            "CREATE TABLE public.p (\n    i integer NOT NULL\n) PARTITION BY RANGE (i);\n\n"
        );
        assert_eq!(
            h.create_table(&table(2, "public.p1"), &columns),
            "CREATE TABLE public.p1 (\n    i integer DEFAULT 7 CONSTRAINT p_i_not_null NOT NULL\n);\n\n"
        );
        assert_eq!(
            h.attach_partitions(&[table(1, "public.p"), table(2, "public.p1")]),
            "ALTER TABLE ONLY public.p ATTACH PARTITION public.p1 FOR VALUES FROM (0) TO (10);\n\n"
        );
        assert_eq!(h.attach_partitions(&[table(1, "public.p")]), "");
    }

    #[test]
    fn an_inheritance_child_has_its_local_columns_and_its_own_defaults_and_not_nulls() {
        let h = hierarchy();
        let columns = HashMap::from([
            (
                3,
                vec![column("a", None, false), column("b", Some("3"), false)],
            ),
            (
                4,
                vec![
                    column("a", Some("1"), true),
                    column("b", None, false),
                    column("c", None, false),
                    column("d", None, true),
                ],
            ),
        ]);
        assert_eq!(
            h.create_table(&table(4, "public.ch"), &columns),
            "CREATE TABLE public.ch (\n    c integer,\n    d integer NOT NULL\n) \
             INHERITS (public.par, public.other);\n\n\
             ALTER TABLE ONLY public.ch ALTER COLUMN a SET DEFAULT 1;\n\
             ALTER TABLE ONLY public.ch ALTER COLUMN a SET NOT NULL;\n\
             ALTER TABLE ONLY public.ch ALTER COLUMN b DROP DEFAULT;\n"
        );
    }

    #[test]
    fn parents_come_before_their_children_and_rows_come_from_leaves() {
        let h = hierarchy();
        let ordered: Vec<u32> = h
            .order(vec![table(4, "ch"), table(2, "p1"), table(3, "par")])
            .iter()
            .map(|t| t.oid)
            .collect();
        assert_eq!(ordered, vec![2, 3, 4]);
        let names = ["i".to_string()];
        assert_eq!(h.copy_query(&table(1, "public.p"), &names), None);
        assert_eq!(
            h.copy_query(&table(3, "public.par"), &names).as_deref(),
            Some("COPY public.par (i) TO STDOUT")
        );
        assert_eq!(
            h.copy_query(&table(4, "public.ch"), &names).as_deref(),
            Some("COPY public.ch (i) TO STDOUT")
        );
    }

    #[test]
    fn inherited_checks_and_clones_are_made_by_their_parent() {
        assert_eq!(fit("f", true, false, false, false, false), Fit::Made);
        assert_eq!(fit("f", false, false, false, true, true), Fit::Recursive);
        assert_eq!(fit("c", false, true, false, false, false), Fit::Made);
        assert_eq!(fit("c", false, false, false, false, true), Fit::Recursive);
        assert_eq!(fit("c", false, false, true, false, true), Fit::Only);
        assert_eq!(fit("p", true, false, false, false, false), Fit::Only);
        assert_eq!(fit("c", false, false, false, false, false), Fit::Only);
        let fits = ConstraintFits {
            written: vec![1],
            recursive: vec!["ALTER TABLE ONLY public.p ADD CONSTRAINT k ".into()],
        };
        let mut constraints = vec![
            Constraint {
                contype: "c".into(),
                validated: true,
                statement: "ALTER TABLE ONLY public.p ADD CONSTRAINT k CHECK ((k > 0));".into(),
            },
            Constraint {
                contype: "c".into(),
                validated: true,
                statement: "ALTER TABLE ONLY public.p ADD CONSTRAINT k2 CHECK ((k > 0));".into(),
            },
        ];
        fits.apply(&mut constraints);
        assert_eq!(
            constraints[0].statement,
            "ALTER TABLE public.p ADD CONSTRAINT k CHECK ((k > 0));"
        );
        assert!(constraints[1].statement.starts_with("ALTER TABLE ONLY"));
    }

    #[test]
    fn version_specific_reads() {
        assert!(trigger_clones_sql(ServerVersion(180000)).contains("tgparentid"));
        assert!(trigger_clones_sql(ServerVersion(130000)).contains("tgparentid"));
        assert!(trigger_clones_sql(ServerVersion(120005)).contains("deptype IN ('I', 'P')"));
        assert!(trigger_clones_sql(ServerVersion(100023)).contains("AND false"));
        assert!(constraint_fits_sql(ServerVersion(110000)).contains("k.conparentid"));
        assert!(!constraint_fits_sql(ServerVersion(100023)).contains("conparentid"));
        assert!(column_places_sql(ServerVersion(180000)).contains("k.conislocal"));
        assert!(column_places_sql(ServerVersion(170000)).contains("a.attnotnull"));
    }
}
