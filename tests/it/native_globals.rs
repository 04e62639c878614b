//! What the native globals cannot write yet fails the run instead of being left out: a
//! privilege on a configuration parameter (15+; `GRANT SET ON PARAMETER`) fails the globals
//! with one line naming it, exit 1, and no globals file is put in place. (Security labels on
//! roles, tablespaces and databases are refused the same way; no label provider can be loaded
//! here, so that branch is not run.)

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::matrix::native::pgback;

#[test]
fn a_parameter_privilege_fails_the_native_globals() {
    let backups = cluster::scratch_dir();
    let source = Cluster::start(ClusterOptions::default().without_archive());
    source.psql("CREATE ROLE nat_param");
    let dir = backups.path().join("set");
    let granted = source.version_num() >= 150000;
    if granted {
        source.psql("GRANT SET ON PARAMETER work_mem TO nat_param");
    }
    let run = pgback(&source, &dir, &["--native"], false);
    let globals: Vec<String> = crate::dump::files_in(&dir)
        .into_iter()
        .filter(|name| name.starts_with("pg_globals_"))
        .collect();
    if granted {
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr
                .contains("privileges on configuration parameters (GRANT ON PARAMETER)"),
            "{}",
            run.stderr
        );
        assert!(
            globals.is_empty(),
            "a globals file was written: {globals:?}"
        );
    } else {
        // Before 15 no parameter has privileges: the globals are written.
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(globals.len(), 1, "{globals:?}");
    }
}
