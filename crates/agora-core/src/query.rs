//! Search queries and their results.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Manifest, PackageName, PublicKey, Result, Version};

/// Where a search looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchScope {
    /// Only the local catalog.
    #[default]
    Local,
    /// The local catalog and, where the backend has one, the network.
    Network,
}

/// A search: free text plus filters, paged.
///
/// Text matches package names, descriptions and keywords; every word must match,
/// and the last word also matches as a prefix. Filters must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Query {
    /// Free text; empty lists everything that passes the filters.
    pub text: String,
    /// Packages in any of these categories (empty: no filter).
    pub categories: Vec<String>,
    /// Packages carrying all of these keywords.
    pub tags: Vec<String>,
    /// Packages owned by this key.
    pub publisher: Option<PublicKey>,
    /// Page size.
    pub limit: u32,
    /// Hits to skip.
    pub offset: u32,
    /// Local catalog only, or the network too.
    pub scope: SearchScope,
    /// How long a network search may take.
    pub timeout: Option<Duration>,
}

impl Query {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 20;
    /// Largest page.
    pub const MAX_LIMIT: u32 = 100;
    /// Deepest offset.
    pub const MAX_OFFSET: u32 = 10_000;
    /// Longest query text.
    pub const MAX_TEXT: usize = 256;
    /// Most values in one filter.
    pub const MAX_FILTER_VALUES: usize = 8;

    /// A query for `text` with default paging.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), ..Self::default() }
    }

    /// Adds a category filter.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.categories.push(category.into());
        self
    }

    /// Adds a tag (keyword) filter.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Restricts to one publisher.
    pub fn publisher(mut self, publisher: PublicKey) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Sets the number of hits to skip.
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }

    /// Checks bounds.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > Self::MAX_LIMIT {
            return Err(Error::InvalidQuery(format!(
                "limit must be between 1 and {}, found {}",
                Self::MAX_LIMIT,
                self.limit
            )));
        }
        if self.offset > Self::MAX_OFFSET {
            return Err(Error::InvalidQuery(format!(
                "offset must be at most {}, found {}",
                Self::MAX_OFFSET,
                self.offset
            )));
        }
        if self.text.len() > Self::MAX_TEXT {
            return Err(Error::InvalidQuery(format!(
                "text must be at most {} bytes, found {}",
                Self::MAX_TEXT,
                self.text.len()
            )));
        }
        for (filter, values) in [("category", &self.categories), ("tag", &self.tags)] {
            if values.len() > Self::MAX_FILTER_VALUES {
                return Err(Error::InvalidQuery(format!("at most {} {filter} filters", Self::MAX_FILTER_VALUES)));
            }
            if values.iter().any(|value| value.is_empty() || value.len() > 64) {
                return Err(Error::InvalidQuery(format!("a {filter} filter must be 1 to 64 characters")));
            }
        }
        Ok(())
    }

    /// The same query in a canonical form (trimmed lowercase text, sorted unique
    /// filters), so equal searches compare equal, e.g. as cache keys.
    pub fn normalized(&self) -> Self {
        let clean = |values: &[String]| {
            let mut values: Vec<String> = values.iter().map(|value| value.trim().to_lowercase()).collect();
            values.sort();
            values.dedup();
            values
        };
        Self {
            text: self.text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
            categories: clean(&self.categories),
            tags: clean(&self.tags),
            ..self.clone()
        }
    }

    /// The words of the text, lowercased, split on anything that is not a letter
    /// or digit (the same rule the catalog's tokenizer uses). Lowercased first, as
    /// [`Query::normalized`] does, so a query and its normalized form have the
    /// same terms (lowercasing can add a non-letter: `İ` becomes `i` + U+0307).
    pub fn terms(&self) -> Vec<String> {
        let text = self.text.to_lowercase();
        text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_owned).collect()
    }
}

impl Default for Query {
    fn default() -> Self {
        Self {
            text: String::new(),
            categories: Vec::new(),
            tags: Vec::new(),
            publisher: None,
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
            scope: SearchScope::Local,
            timeout: None,
        }
    }
}

/// One package in a search result: a summary of its newest live version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Package name.
    pub name: PackageName,
    /// The version a user would get by default.
    pub version: Version,
    /// Its description.
    pub description: String,
    /// Its keywords.
    pub keywords: Vec<String>,
    /// Its categories.
    pub categories: Vec<String>,
    /// Its publisher.
    pub publisher: PublicKey,
    /// When it was published (Unix seconds).
    pub published_at: u64,
    /// Relevance; higher is better. Only comparable within one result.
    pub score: f64,
    /// Another key also claims the name (see [`crate::NameClaims`]); this hit is
    /// the claim the answering node trusts.
    #[serde(default)]
    pub contested: bool,
    /// The publisher has been proven to equivocate (see [`crate::Equivocation`]).
    #[serde(default)]
    pub equivocated: bool,
}

impl SearchHit {
    /// A hit summarising `manifest`.
    pub fn from_manifest(manifest: &Manifest, score: f64) -> Self {
        Self {
            name: manifest.name().clone(),
            version: manifest.version().clone(),
            description: manifest.metadata.description.clone(),
            keywords: manifest.metadata.keywords.clone(),
            categories: manifest.metadata.categories.clone(),
            publisher: manifest.publisher,
            published_at: manifest.published_at,
            score,
            contested: false,
            equivocated: false,
        }
    }
}

/// One page of search results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// The hits, best first.
    pub hits: Vec<SearchHit>,
    /// How many packages matched in all (across pages).
    pub total: u64,
    /// True when some sources did not answer in time.
    pub partial: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        assert!(Query::new("x").validate().is_ok());
        assert!(Query::new("x").limit(0).validate().is_err());
        assert!(Query::new("x").limit(101).validate().is_err());
        assert!(Query::new("x").offset(10_001).validate().is_err());
        assert!(Query::new("x".repeat(257)).validate().is_err());
        assert!(Query::new("x").tag("").validate().is_err());
        let error = Query::new("x").limit(1000).validate().unwrap_err().to_string();
        assert_eq!(error, "invalid query: limit must be between 1 and 100, found 1000");
    }

    #[test]
    fn normalization_makes_equal_searches_equal() {
        let a = Query::new("  JSON   Parser ").tag("b").tag("a").tag("a");
        let b = Query::new("json parser").tag("a").tag("b");
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.terms(), vec!["json", "parser"]);
        assert_eq!(Query::new("web-server_kit").terms(), vec!["web", "server", "kit"]);
    }

    /// Found by the `query` fuzz target: `İ` lowercases to `i` + U+0307, which is
    /// not alphanumeric, so the query and its normalized form (the read cache's
    /// key) split into different terms and one cache entry served two searches.
    #[test]
    fn a_query_and_its_normalized_form_have_the_same_terms() {
        for text in ["\u{130}x", "A\u{3a3}.B", "\u{3a3}\u{3a3}", "  JSON   Parser "] {
            let query = Query::new(text);
            assert_eq!(query.normalized().terms(), query.terms(), "{text:?}");
        }
        assert_eq!(Query::new("\u{130}x").terms(), vec!["i", "x"]);
    }
}
