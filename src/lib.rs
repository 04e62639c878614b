//! safe-backup: PostgreSQL backups that restore.
