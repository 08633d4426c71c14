//! virsh's `vshTable`: columns padded to their widest cell, three spaces
//! between columns, a leading space, no padding after the last column, and
//! (unless quiet) a header row underlined with `width + 3` dashes per column.

#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Table {
            header: header.iter().map(|s| s.as_ref().to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// The text virsh prints; `header` is false under `--quiet`, and then
    /// the header does not count towards column widths either.
    pub fn render(&self, header: bool) -> String {
        let ncols = self.header.len();
        let mut widths = vec![0usize; ncols];
        let counted = header
            .then_some(&self.header)
            .into_iter()
            .chain(self.rows.iter());
        for row in counted {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(display_width(cell));
            }
        }
        let mut out = String::new();
        if header {
            render_row(&mut out, &self.header, &widths);
            for w in &widths {
                out.extend(std::iter::repeat_n('-', w + 3));
            }
            out.push('\n');
        }
        for row in &self.rows {
            render_row(&mut out, row, &widths);
        }
        out
    }
}

fn render_row(out: &mut String, row: &[String], widths: &[usize]) {
    out.push(' ');
    for (i, cell) in row.iter().enumerate() {
        out.push_str(cell);
        if i + 1 < row.len() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(display_width(cell)) + 3;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

/// Terminal width of a cell. virsh measures wide characters with wcwidth;
/// counting chars is right for everything it prints from libvirt objects
/// (names are ASCII or narrow UTF-8 in practice).
fn display_width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_matches_virsh() {
        // `virsh -c test:///default list`
        let mut t = Table::new(&["Id", "Name", "State"]);
        t.push(["1", "test", "running"]);
        assert_eq!(
            t.render(true),
            " Id   Name   State\n----------------------\n 1    test   running\n"
        );
        // `virsh -q -c test:///default list`
        assert_eq!(t.render(false), " 1   test   running\n");
    }

    #[test]
    fn empty_table_has_header_only() {
        // `virsh -c test:///default vol-list default-pool`
        let t = Table::new(&["Name", "Path"]);
        assert_eq!(t.render(true), " Name   Path\n--------------\n");
        assert_eq!(t.render(false), "");
    }

    #[test]
    fn widths_follow_widest_cell() {
        // `virsh -c test:///default list --all` after defining vm1
        let mut t = Table::new(&["Id", "Name", "State"]);
        t.push(["1", "test", "running"]);
        t.push(["-", "vm1", "shut off"]);
        assert_eq!(
            t.render(true),
            " Id   Name   State\n-----------------------\n 1    test   running\n -    vm1    shut off\n"
        );
    }

    #[test]
    fn empty_last_cell_keeps_separator() {
        // `virsh -c test:///default list --title`
        let mut t = Table::new(&["Id", "Name", "State", "Title"]);
        t.push(["1", "test", "running", ""]);
        assert_eq!(
            t.render(true),
            " Id   Name   State     Title\n------------------------------\n 1    test   running   \n"
        );
    }
}
