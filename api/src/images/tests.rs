use super::sums::parse_md5;
use super::*;
use cirrus_crds::kinds::image::DiskFormat;

#[test]
fn content_md5_hex_or_base64() {
    let hex_sum = "9e107d9d372bb6826bd81d3542a419d6";
    assert_eq!(parse_md5(hex_sum).as_deref(), Some(hex_sum));
    assert_eq!(
        parse_md5("nhB9nTcrtoJr2B01QqQZ1g==").as_deref(),
        Some(hex_sum)
    );
    assert_eq!(parse_md5("nope"), None);
}

#[test]
fn hex_is_lowercase_and_padded() {
    assert_eq!(hex(&[0, 15, 255]), "000fff");
}

#[test]
fn disk_format_names_match_the_schema() {
    for format in [
        DiskFormat::Qcow2,
        DiskFormat::Raw,
        DiskFormat::Iso,
        DiskFormat::Vhd,
    ] {
        assert_eq!(
            serde_json::to_value(format).unwrap(),
            serde_json::Value::from(format_name(format))
        );
    }
}
