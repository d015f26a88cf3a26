//! Search: one document per package (its default version), indexed by FTS5 over
//! name, description and keywords, ranked by BM25 with an exact-name boost, with
//! category, tag and publisher filters.
//!
//! Not here: validating queries ([`agora_core::Query`]) or the public method
//! ([`crate::Packages::search`]); these are the SQL behind them, and the
//! refresh of a package's document that every write to the package runs.

use agora_core::{PackageIndex, PackageName, PublicKey, Query, SearchHit, SearchResults, VersionEntry};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use crate::{Error, Result};

/// BM25 column weights: a hit in the name counts most, then keywords, then description.
const NAME_WEIGHT: f64 = 10.0;
const DESCRIPTION_WEIGHT: f64 = 1.0;
const KEYWORD_WEIGHT: f64 = 4.0;
/// Added to the score of the package whose name is exactly the query text.
const EXACT_NAME_BOOST: f64 = 1000.0;

/// Rebuilds the search document of one package from its index: the newest live
/// version whose manifest is stored, or no document when there is none.
pub(crate) fn refresh_document(tx: &Transaction<'_>, package_id: i64, index: &PackageIndex) -> Result<()> {
    tx.prepare_cached("DELETE FROM search_fts WHERE rowid = ?1")?.execute([package_id])?;
    tx.prepare_cached("DELETE FROM search_tags WHERE package_id = ?1")?.execute([package_id])?;
    tx.prepare_cached("DELETE FROM search_categories WHERE package_id = ?1")?.execute([package_id])?;
    tx.prepare_cached("DELETE FROM search_docs WHERE package_id = ?1")?.execute([package_id])?;

    let mut candidates: Vec<&VersionEntry> = index.versions.iter().rev().filter(|entry| !entry.yanked).collect();
    candidates.sort_by_key(|entry| !entry.version.pre.is_empty());
    for entry in candidates {
        let record: Option<Vec<u8>> = tx
            .prepare_cached("SELECT record FROM manifests WHERE package_id = ?1 AND version = ?2")?
            .query_row(params![package_id, entry.version.to_string()], |row| row.get(0))
            .optional()?;
        let Some(record) = record else { continue };
        // Verified when it was stored.
        let manifest = agora_core::Manifest::from_trusted_bytes(&record)
            .map_err(|error| Error::Corrupt(format!("stored manifest: {error}")))?;
        let metadata = &manifest.metadata;
        let to_json = |values: &[String]| serde_json::to_string(values).map_err(|e| Error::Corrupt(e.to_string()));
        tx.prepare_cached(
            "INSERT INTO search_docs (package_id, version, description, keywords, categories, publisher, published_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            package_id,
            entry.version.to_string(),
            metadata.description,
            to_json(&metadata.keywords)?,
            to_json(&metadata.categories)?,
            manifest.publisher.as_bytes().as_slice(),
            manifest.published_at as i64
        ])?;
        tx.prepare_cached("INSERT INTO search_fts (rowid, name, description, keywords) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![package_id, metadata.name.as_str(), metadata.description, metadata.keywords.join(" ")])?;
        for tag in &metadata.keywords {
            tx.prepare_cached("INSERT INTO search_tags (tag, package_id) VALUES (?1, ?2)")?
                .execute(params![tag, package_id])?;
        }
        for category in &metadata.categories {
            tx.prepare_cached("INSERT INTO search_categories (category, package_id) VALUES (?1, ?2)")?
                .execute(params![category, package_id])?;
        }
        return Ok(());
    }
    Ok(())
}

/// Runs a validated query.
///
/// With text, ranking happens inside the full-text index: the matches are
/// scored by BM25 (plus the exact-name boost, found with one primary-key lookup)
/// and only the page's rows are joined to their documents. Joining every match
/// before sorting, as a plain `JOIN … ORDER BY` does, cost 3–4× more on common
/// words (`cargo xtask bench search`). Filters apply to the materialized matches:
/// as an `IN` on the full-text table's rowid, SQLite would re-run the `MATCH`
/// once per candidate. Ties in score go to the package stored first here.
pub(crate) fn run(connection: &Connection, query: &Query) -> Result<SearchResults> {
    let terms = query.terms();
    let mut filters: Vec<String> = Vec::new();
    let mut filter_args: Vec<Value> = Vec::new();
    // Filters are `IN (subquery)` so SQLite evaluates each once, using the primary
    // keys (category, package_id) and (tag, package_id); a subcategory match is
    // the key range ['cat/', 'cat0') — '0' follows '/' in ASCII.
    if !query.categories.is_empty() {
        let alternatives = vec!["category = ? OR (category >= ? AND category < ?)"; query.categories.len()];
        filters.push(format!("IN (SELECT package_id FROM search_categories WHERE {})", alternatives.join(" OR ")));
        for category in &query.categories {
            let category = category.trim().to_lowercase();
            filter_args.extend([
                Value::Text(category.clone()),
                Value::Text(format!("{category}/")),
                Value::Text(format!("{category}0")),
            ]);
        }
    }
    for tag in &query.tags {
        filters.push("IN (SELECT package_id FROM search_tags WHERE tag = ?)".into());
        filter_args.push(Value::Text(tag.trim().to_lowercase()));
    }
    if let Some(publisher) = &query.publisher {
        filters.push("IN (SELECT package_id FROM search_docs WHERE publisher = ?)".into());
        filter_args.push(Value::Blob(publisher.as_bytes().to_vec()));
    }
    let filter_on = |column: &str| -> String {
        if filters.is_empty() {
            String::new()
        } else {
            let conditions: Vec<String> = filters.iter().map(|filter| format!("{column} {filter}")).collect();
            format!("WHERE {}", conditions.join(" AND "))
        }
    };

    let (total, ranked, order, mut args): (i64, String, &str, Vec<Value>) = if terms.is_empty() {
        let filter = filter_on("d.package_id");
        let total = connection
            .prepare_cached(&format!("SELECT count(*) FROM search_docs d {filter}"))?
            .query_row(params_from_iter(&filter_args), |row| row.get(0))?;
        let ranked = format!(
            "SELECT d.package_id AS id, 0.0 AS score FROM search_docs d CROSS JOIN packages p ON p.id = d.package_id
             {filter} ORDER BY p.name ASC LIMIT ? OFFSET ?"
        );
        (total, ranked, "p.name ASC", filter_args)
    } else {
        let expression = Value::Text(match_expression(&terms));
        let filter = filter_on("id");
        let mut count_args = vec![expression.clone()];
        count_args.extend(filter_args.iter().cloned());
        let count_sql = if filters.is_empty() {
            "SELECT count(*) FROM search_fts WHERE search_fts MATCH ?".to_owned()
        } else {
            format!(
                "WITH matches AS MATERIALIZED (SELECT rowid AS id FROM search_fts WHERE search_fts MATCH ?)
                 SELECT count(*) FROM matches {filter}"
            )
        };
        let total =
            connection.prepare_cached(&count_sql)?.query_row(params_from_iter(&count_args), |row| row.get(0))?;
        let ranked = format!(
            "WITH matches AS MATERIALIZED (
                 SELECT rowid AS id, bm25(search_fts, {NAME_WEIGHT}, {DESCRIPTION_WEIGHT}, {KEYWORD_WEIGHT}) AS rank
                 FROM search_fts WHERE search_fts MATCH ?)
             SELECT id, (CASE WHEN id = (SELECT id FROM packages WHERE name = ?) THEN {EXACT_NAME_BOOST} ELSE 0.0 END)
                 - rank AS score
             FROM matches {filter} ORDER BY score DESC, id ASC LIMIT ? OFFSET ?"
        );
        let mut args = vec![expression, Value::Text(query.text.trim().to_lowercase())];
        args.extend(filter_args);
        (total, ranked, "r.score DESC, r.id ASC", args)
    };
    args.push(Value::Integer(i64::from(query.limit)));
    args.push(Value::Integer(i64::from(query.offset)));
    let sql = format!(
        "SELECT p.name, d.version, d.description, d.keywords, d.categories, d.publisher, d.published_at, r.score,
             EXISTS (SELECT 1 FROM claims c WHERE c.name = p.name),
             EXISTS (SELECT 1 FROM equivocations e WHERE e.owner = p.owner)
         FROM ({ranked}) r CROSS JOIN search_docs d ON d.package_id = r.id CROSS JOIN packages p ON p.id = r.id
         ORDER BY {order}"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(&args), |row| {
        Ok(RawHit {
            name: row.get(0)?,
            version: row.get(1)?,
            description: row.get(2)?,
            keywords: row.get(3)?,
            categories: row.get(4)?,
            publisher: row.get(5)?,
            published_at: row.get(6)?,
            score: row.get(7)?,
            contested: row.get(8)?,
            equivocated: row.get(9)?,
        })
    })?;
    let hits = rows.map(|row| row?.into_hit()).collect::<Result<Vec<_>>>()?;
    Ok(SearchResults { hits, total: total as u64, partial: false })
}

/// Every term must match; the last one also as a prefix (search-as-you-type).
/// Terms are alphanumeric (see [`Query::terms`]), so quoting them is enough.
fn match_expression(terms: &[String]) -> String {
    let last = terms.len() - 1;
    terms
        .iter()
        .enumerate()
        .map(|(at, term)| if at == last { format!("\"{term}\"*") } else { format!("\"{term}\"") })
        .collect::<Vec<_>>()
        .join(" ")
}

struct RawHit {
    name: String,
    version: String,
    description: String,
    keywords: String,
    categories: String,
    publisher: Vec<u8>,
    published_at: i64,
    score: f64,
    contested: bool,
    equivocated: bool,
}

impl RawHit {
    fn into_hit(self) -> Result<SearchHit> {
        let corrupt = |what: &str| Error::Corrupt(format!("search document of `{}`: bad {what}", self.name));
        let publisher: [u8; 32] = self.publisher.as_slice().try_into().map_err(|_| corrupt("publisher"))?;
        Ok(SearchHit {
            name: PackageName::parse(&self.name).map_err(|_| corrupt("name"))?,
            version: agora_core::parse_version(&self.version).map_err(|_| corrupt("version"))?,
            keywords: serde_json::from_str(&self.keywords).map_err(|_| corrupt("keywords"))?,
            categories: serde_json::from_str(&self.categories).map_err(|_| corrupt("categories"))?,
            publisher: PublicKey::from_bytes(&publisher).map_err(|_| corrupt("publisher"))?,
            published_at: self.published_at as u64,
            score: self.score,
            contested: self.contested,
            equivocated: self.equivocated,
            description: self.description,
        })
    }
}
