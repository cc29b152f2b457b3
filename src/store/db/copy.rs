//! Bulk loads with binary `COPY … FROM STDIN`: the full rebuild's sink. Each field is
//! encoded by the same `ToSql` the projector's batched statements use, against the
//! column's type as the table declares it, so both sinks store the same values.

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use tokio_postgres::{
    types::{IsNull, ToSql, Type},
    Client,
};

use super::DbError;

/// A row a table can be bulk-loaded with.
pub trait CopyRow {
    /// The table.
    const TABLE: &'static str;
    /// Its columns, in the order [`CopyRow::encode`] writes them.
    const COLUMNS: &'static str;
    /// Writes one field per column, in order.
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError>;
}

/// A value that does not fit its column's type (a bug, not bad input).
#[derive(Debug, thiserror::Error)]
#[error("column {column} of {table}: {problem}")]
pub struct EncodeError {
    table: &'static str,
    column: usize,
    problem: String,
}

/// Writes one row's fields into the COPY buffer.
pub struct RowWriter<'a> {
    buf: &'a mut BytesMut,
    types: &'a [Type],
    table: &'static str,
    column: usize,
}

impl RowWriter<'_> {
    /// The next column's value (`None` for NULL).
    pub fn field<V: ToSql + ?Sized>(&mut self, value: &V) -> Result<(), EncodeError> {
        let error = |column, problem: String| EncodeError {
            table: self.table,
            column,
            problem,
        };
        let ty = self
            .types
            .get(self.column)
            .ok_or_else(|| error(self.column, "more fields than columns".into()))?;
        let at = self.buf.len();
        self.buf.put_i32(0);
        let is_null = value
            .to_sql_checked(ty, self.buf)
            .map_err(|e| error(self.column, e.to_string()))?;
        let len = match is_null {
            IsNull::Yes => {
                self.buf.truncate(at + 4);
                -1
            }
            IsNull::No => i32::try_from(self.buf.len() - at - 4)
                .map_err(|_| error(self.column, "field over 2 GiB".into()))?,
        };
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.column += 1;
        Ok(())
    }
}

/// How many bytes go to Postgres at a time.
const CHUNK: usize = 1 << 20;

/// Loads `rows` into `T::TABLE` with one binary COPY; returns the rows written.
pub async fn copy_in<'r, T: CopyRow + 'r>(
    client: &Client,
    rows: impl IntoIterator<Item = &'r T>,
) -> Result<u64, DbError> {
    let types: Vec<Type> = client
        .prepare(&format!("SELECT {} FROM {} LIMIT 0", T::COLUMNS, T::TABLE))
        .await?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let fields = i16::try_from(types.len()).expect("tables have few columns");
    let sink = client
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            T::TABLE,
            T::COLUMNS
        ))
        .await?;
    futures::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK + 64 * 1024);
    // Signature, flags, header extension length.
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
    for row in rows {
        buf.put_i16(fields);
        let mut writer = RowWriter {
            buf: &mut buf,
            types: &types,
            table: T::TABLE,
            column: 0,
        };
        row.encode(&mut writer)
            .map_err(|e| DbError::Encode(e.to_string()))?;
        if writer.column != types.len() {
            return Err(DbError::Encode(format!(
                "{}: {} fields for {} columns",
                T::TABLE,
                writer.column,
                types.len()
            )));
        }
        if buf.len() >= CHUNK {
            sink.send(buf.split().freeze()).await?;
            // A fresh chunk at once: grown from empty, it would be reallocated and
            // copied about twenty times on its way to a mebibyte.
            buf.reserve(CHUNK + 64 * 1024);
        }
    }
    buf.put_i16(-1);
    sink.send(buf.freeze()).await?;
    Ok(sink.finish().await?)
}
