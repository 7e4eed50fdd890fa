from datetime import datetime, timezone

import pytest

from shared.haltian.keys import LEGACY, V1, parse_key

ORG = "00000000-0000-0000-0000-000000000000"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_legacy_key_from_haltians_documentation() -> None:
    key = f"parquet/{ORG}/measurementBatteryVoltage/2025/02/2025_02_25_14_measurementBatteryVoltage.parquet"
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.layout, parsed.organization, parsed.dataset) == (LEGACY, ORG, "measurementBatteryVoltage")
    assert (parsed.year, parsed.month) == (2025, 2)
    assert parsed.window_start == utc(2025, 2, 25, 14)
    assert parsed.window_end is None
    assert parsed.month_folder == f"parquet/{ORG}/measurementBatteryVoltage/2025/02/"
    assert parsed.dataset_folder == f"parquet/{ORG}/measurementBatteryVoltage/"


def test_legacy_key_below_the_older_downloads_prefix() -> None:
    parsed = parse_key(f"downloads/parquet/{ORG}/device/2024/12/2024_12_31_23_device.parquet")
    assert parsed is not None and parsed.layout == LEGACY and parsed.dataset == "device"
    assert parsed.window_start == utc(2024, 12, 31, 23)


def test_v1_key_with_window_start_and_end() -> None:
    key = f"parquet/v1/{ORG}/measurementCO2/2026/03/2026_03_31_2345_2026_04_01_0000_measurementCO2.parquet"
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.layout, parsed.dataset, parsed.year, parsed.month) == (V1, "measurementCO2", 2026, 3)
    assert parsed.window_start == utc(2026, 3, 31, 23, 45)
    assert parsed.window_end == utc(2026, 4, 1, 0, 0)


@pytest.mark.parametrize(
    "key",
    [
        f"parquet/{ORG}/measurementCO2/2026/11/_SUCCESS",
        f"parquet/{ORG}/measurementCO2/2026/11/",
        f"parquet/{ORG}/measurementCO2/2026/11/2026_11_01_00_measurementCO2.csv",
        f"parquet/{ORG}/measurementCO2/2026/11/2026_11_01_00_measurementTVOC.parquet",  # dataset differs from folder
        f"parquet/{ORG}/measurementCO2/2026/11/2026_10_01_00_measurementCO2.parquet",  # month differs from folder
        f"parquet/{ORG}/measurementCO2/2026/02/2026_02_30_00_measurementCO2.parquet",  # no such day
        f"parquet/{ORG}/measurementCO2/2026/11/2026_11_01_24_measurementCO2.parquet",  # no such hour
        "parquet/6F1C1F7E-3C5A-4A53-9F4E-2B7D9A1C0E11/measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
        "parquet/not-a-uuid/measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
        f"parquet/{ORG}/year=2026/11/2026_11_01_00_year=2026.parquet",
        f"parquet/{ORG}/measurementCO2/2026/11/../11/2026_11_01_00_measurementCO2.parquet",
        f"parquet/{ORG}//measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
        f"parquet/{ORG}/measurement CO2/2026/11/2026_11_01_00_measurement CO2.parquet",
        f"parquet/{ORG}/measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet.tmp",
        f"other/{ORG}/measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
        f"parquet/v1/{ORG}/measurementCO2/2026/03/2026_03_31_2345_2026_03_31_2300_measurementCO2.parquet",  # ends first
        f"parquet/v1/{ORG}/measurementCO2/2026/03/2026_03_31_23_measurementCO2.parquet",  # legacy name below v1/
        "",
    ],
)
def test_keys_that_fit_no_layout_are_not_parsed(key: str) -> None:
    assert parse_key(key) is None


def test_a_parsed_key_is_made_only_of_safe_characters() -> None:
    # The destination path is the key itself: nothing that parses may climb out of its folder.
    key = f"parquet/v1/{ORG}/devices/2026/11/2026_11_01_0000_2026_11_01_0100_devices.parquet"
    parsed = parse_key(key)
    assert parsed is not None
    assert all(segment not in ("", ".", "..") for segment in parsed.key.split("/"))
    assert set(parsed.key) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-.")
