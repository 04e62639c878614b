//! Boolean flags as pg_back spells them, shared by the flag structs of the sections:
//! `--flag[=BOOL]` that can be told "not given" from false, and `--x` / `--no-x` pairs where
//! the later one wins.

use super::values::parse_bool;

/// A `--with-x[=BOOL]` / `--without-x` pair: clap keeps only the later of the two flags, so
/// `--without-x` given means false; otherwise the positive one (flag or variable), if any.
pub fn either(with: Option<bool>, without: bool) -> Option<bool> {
    if without {
        Some(false)
    } else {
        with
    }
}

/// A boolean flag that can be told "not given" from false: `--flag` is true, `--flag=BOOL`
/// (or its variable) says which, absent is `None`.
pub fn toggle(arg: clap::Arg) -> clap::Arg {
    arg.value_name("BOOL")
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .value_parser(parse_bool)
}

/// Lays each flag (or variable) actually given over the same-named field of a section:
/// `layer!(section, flags; a, b)`. With `overriding TABLES`, a flag also wins over the field
/// of each per-database table (which is an `Option`, cleared).
macro_rules! layer {
    ($section:expr, $flags:expr; $($field:ident),+ $(,)?) => {
        $(if let Some(value) = &$flags.$field {
            $section.$field = value.clone();
        })+
    };
    ($section:expr, $flags:expr, overriding $tables:expr; $($field:ident),+ $(,)?) => {
        $(if let Some(value) = &$flags.$field {
            $section.$field = value.clone();
            for table in $tables {
                table.$field = None;
            }
        })+
    };
}
pub(crate) use layer;

/// The positive flag of a `--with-x` / `--without-x` pair: a [`toggle`] whose `variable` is read
/// as its default. Not clap's `env`: clap would take the variable for a conflict with a later
/// `--without-x`, which must win over it.
pub fn negatable(arg: clap::Arg, variable: &str) -> clap::Arg {
    // Leaked: clap keeps defaults as `&'static str`; this runs once per parse.
    let value = std::env::var(variable)
        .ok()
        .map(|value| &*Box::leak(value.into_boxed_str()));
    toggle(arg).default_value(value).hide_default_value(true)
}
