//! Search queries from outside (`GET /v1/search` parameters, the CLI): the text
//! and filters of `agora_core::Query`, its `validate`, `normalized` and `terms`.
//!
//! Asserts: `validate` and `normalized` never panic; `normalized` is idempotent
//! and is a sound cache key (the read cache keys searches by it): the normalized
//! query searches exactly as the original does, i.e. it has the same terms, the
//! same exact-name candidate and the same filter sets the catalog's search uses
//! (`agora-store/src/search.rs`); and a query that validates becomes a network
//! `SearchRequest` (as `agora/src/search.rs` builds it) that every peer decodes.

#![no_main]

use std::collections::BTreeSet;

use agora_core::{PackageName, Query};
use agora_net::{MAX_SEARCH_REQUEST, SearchRequest, Wire};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(query) = query(&mut Unstructured::new(bytes)) else { return };
    let normalized = query.normalized();
    assert_eq!(normalized.normalized(), normalized, "normalizing twice changes the query");
    assert_eq!(normalized.terms(), query.terms(), "the normalized query has other terms");
    assert_eq!(exact_name(&normalized), exact_name(&query), "the normalized query boosts another name");
    assert_eq!(filters(&normalized.categories), filters(&query.categories));
    assert_eq!(filters(&normalized.tags), filters(&query.tags));

    if query.validate().is_ok() {
        let request = SearchRequest {
            text: query.text.clone(),
            categories: query.categories.clone(),
            tags: query.tags.clone(),
            publisher: query.publisher,
            limit: 20,
        };
        let encoded = request.encode();
        assert!(encoded.len() <= MAX_SEARCH_REQUEST, "a valid query does not fit in a search request frame");
        assert_eq!(SearchRequest::decode(&encoded), Ok(request), "peers refuse a valid query");
    }
});

fn query(input: &mut Unstructured<'_>) -> Result<Query> {
    let mut query = Query::new(input.arbitrary::<String>()?);
    query.categories = input.arbitrary()?;
    query.tags = input.arbitrary()?;
    query.limit = input.arbitrary()?;
    query.offset = input.arbitrary()?;
    Ok(query)
}

/// The name the catalog boosts for an exact match (`text.trim().to_lowercase()`);
/// only a valid package name can match one.
fn exact_name(query: &Query) -> Option<PackageName> {
    PackageName::parse(&query.text.trim().to_lowercase()).ok()
}

/// A filter list as the catalog applies it: trimmed, lowercased, as a set.
fn filters(values: &[String]) -> BTreeSet<String> {
    values.iter().map(|value| value.trim().to_lowercase()).collect()
}
