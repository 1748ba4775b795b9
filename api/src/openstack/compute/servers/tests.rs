use super::list::Filters;
use super::*;

#[test]
fn query_pairs_decode_and_keep_repeats() {
    assert_eq!(
        query_string::pairs(Some(
            "status=ACTIVE&status=SHUTOFF&name=web%201+x&all_tenants"
        )),
        [
            ("status".to_string(), "ACTIVE".to_string()),
            ("status".to_string(), "SHUTOFF".to_string()),
            ("name".to_string(), "web 1 x".to_string()),
            ("all_tenants".to_string(), String::new()),
        ]
    );
    assert_eq!(query_string::encode("a b/c"), "a%20b%2Fc");
}

#[test]
fn all_tenants_is_for_admins() {
    let pairs = vec![("all_tenants".to_string(), "1".to_string())];
    assert_eq!(Filters::parse(&pairs, false).unwrap_err().code, 403);
    assert!(Filters::parse(&pairs, true).unwrap().all_tenants);
}
