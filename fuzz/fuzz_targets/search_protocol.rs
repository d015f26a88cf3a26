//! `/agora/search/1.0.0`: `SearchRequest` and `SearchResponse`, bare and through
//! `SearchCodec`. What it asserts: `agora_fuzz::frames::check_protocol`; every
//! decoded request is within the documented bounds and, turned into a `Query` the
//! way the answering node does (`network/inbound.rs`), passes `Query::validate`
//! (a request the codec lets through is never refused later as invalid); a
//! decoded response holds at most `MAX_SEARCH_RESULTS` entries.

#![no_main]

use agora_core::Query;
use agora_fuzz::frames::{Decoded, Protocol, check_protocol};
use agora_net::{
    MAX_SEARCH_FILTERS, MAX_SEARCH_REQUEST, MAX_SEARCH_RESPONSE, MAX_SEARCH_RESULTS, MAX_SEARCH_TEXT, SEARCH_PROTOCOL,
    SearchCodec, SearchRequest, Wire,
};
use libfuzzer_sys::fuzz_target;

const PROTOCOL: Protocol =
    Protocol { name: SEARCH_PROTOCOL, max_request: MAX_SEARCH_REQUEST, max_response: MAX_SEARCH_RESPONSE };

fuzz_target!(|bytes: &[u8]| match check_protocol::<SearchCodec, _, _>(bytes, &PROTOCOL) {
    Decoded::Request(request) => check_request(request),
    Decoded::Response(response) => assert!(response.entries.len() <= usize::from(MAX_SEARCH_RESULTS)),
    Decoded::Nothing => {}
});

fn check_request(request: SearchRequest) {
    assert!(request.text.len() <= MAX_SEARCH_TEXT);
    assert!((1..=MAX_SEARCH_RESULTS).contains(&request.limit));
    for filter in [&request.categories, &request.tags] {
        assert!(filter.len() <= MAX_SEARCH_FILTERS);
        assert!(filter.iter().all(|value| (1..=64).contains(&value.len())));
    }
    assert!(request.encode().len() <= MAX_SEARCH_REQUEST);
    let mut query = Query::new(request.text);
    query.categories = request.categories;
    query.tags = request.tags;
    query.publisher = request.publisher;
    query.limit = u32::from(request.limit);
    if let Err(error) = query.validate() {
        panic!("a search request that decodes is refused by Query::validate: {error}");
    }
}
