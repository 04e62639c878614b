//! Plain-text tables of the summaries (pgback's run, `--restore`'s): aligned columns, two spaces apart.
//!
//! Uses nothing of the crate.

/// How a table column is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Numbers and durations.
    Right,
}

/// Rows as aligned columns two spaces apart; the last column is never padded, columns beyond
/// `aligns` are left-aligned.
pub fn render_table(rows: &[Vec<String>], aligns: &[Align]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |column: usize| {
        rows.iter()
            .filter_map(|row| row.get(column))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                let pad = widths[column].saturating_sub(cell.chars().count());
                if column + 1 == row.len() {
                    cell.clone()
                } else if aligns.get(column) == Some(&Align::Right) {
                    format!("{}{cell}", " ".repeat(pad))
                } else {
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let rows: Vec<Vec<String>> = [
            ["database", "size", "outcome"],
            ["app", "1.5 MiB", "ok"],
            ["név", "12 B", "FAILED: x"],
        ]
        .iter()
        .map(|row| row.iter().map(|cell| cell.to_string()).collect())
        .collect();
        assert_eq!(
            render_table(&rows, &[Align::Left, Align::Right]),
            "database     size  outcome\n\
             app       1.5 MiB  ok\n\
             név          12 B  FAILED: x\n"
        );
        assert_eq!(render_table(&[], &[]), "");
    }
}
