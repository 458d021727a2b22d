//! Class labels from a CSV file (one label per line, or one column of a table with a header)
//! or an integer `.npy` array.

use std::path::Path;

use super::DataError;

/// The labels in `path`, and the file's bytes (for the dataset hash). `column` names the CSV
/// column; by default a column named `label`, else the last one.
pub fn load_labels(path: &Path, column: Option<&str>) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    let bytes = super::read_file(path)?;
    let err = |reason: String| DataError::Labels { path: path.to_path_buf(), reason };
    let labels = if bytes.starts_with(b"\x93NUMPY") {
        let (shape, values) = super::npy::read_f32(&bytes).map_err(err)?;
        if shape.len() != 1 {
            return Err(err(format!("the label array has shape {shape:?}; it must be one label per item (1-D)")));
        }
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f32 {
                    Ok(v as u32)
                } else {
                    Err(err(format!("item {i} has label {v}; labels are class indices 0, 1, 2, …")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| err("it is neither a .npy file nor UTF-8 text (CSV)".into()))?;
        parse_csv(text, column).map_err(err)?
    };
    Ok((labels, bytes))
}

fn parse_csv(text: &str, column: Option<&str>) -> Result<Vec<u32>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).peekable();
    let split = |l: &str| l.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect::<Vec<_>>();
    let first = lines.peek().map(|(_, l)| split(l)).ok_or("the file is empty")?;
    let has_header = first.iter().any(|c| c.parse::<u32>().is_err());
    let col = if has_header {
        lines.next();
        match column {
            Some(c) => first
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| format!("it has no column \"{c}\"; its columns are: {}", first.join(", ")))?,
            None => first.iter().position(|h| h == "label").unwrap_or(first.len() - 1),
        }
    } else {
        match column {
            Some(c) => return Err(format!("label_column = \"{c}\" needs a header row, and the file has none")),
            None => first.len() - 1,
        }
    };
    lines
        .map(|(i, l)| {
            let cells = split(l);
            let cell = cells
                .get(col)
                .ok_or_else(|| format!("line {} has {} columns, fewer than the header", i + 1, cells.len()))?;
            cell.parse::<u32>().map_err(|_| format!("line {}: \"{cell}\" is not a class index (0, 1, 2, …)", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_forms() {
        assert_eq!(parse_csv("3\n1\n\n0\n", None).unwrap(), vec![3, 1, 0]);
        assert_eq!(parse_csv("file,label\na.png,2\nb.png,7\n", None).unwrap(), vec![2, 7]);
        assert_eq!(parse_csv("label,file\n2,a\n7,b\n", None).unwrap(), vec![2, 7]);
        assert_eq!(parse_csv("id,cls,x\n0,4,1\n1,5,1\n", Some("cls")).unwrap(), vec![4, 5]);
        assert!(parse_csv("id,cls\n0,4\n", Some("y")).unwrap_err().contains("columns are: id, cls"));
        assert!(parse_csv("label\n1\n-2\n", None).unwrap_err().contains("line 3: \"-2\""));
        assert!(parse_csv("", None).unwrap_err().contains("empty"));
    }
}
