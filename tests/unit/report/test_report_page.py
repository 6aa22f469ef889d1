"""The report page as a person sees it: storage names, reasons grouped by kind, rows in order, no wrapped cells.

The page tests lay the page out in a real headless Chromium (Debian's package
`chromium`) and read what it shows: `document.body.innerText` and, for every
cell that holds a size or a date, how many lines it takes. They run in a
test-only copy of the page with one inline script added; the page itself has
none. Where Chromium is missing they are skipped, saying so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import struct
from datetime import datetime, timezone

import pytest

from b2iconik import __main__ as cli
from b2iconik.report import browser
from b2iconik.report.command import ROW_ORDER
from b2iconik.report.reasons import group_reasons, masked_reason
from b2iconik.units import human_bytes
from b2iconik.workflows.inventory import Row
from tests.helpers.world import CATEGORY, World, env_for

B2_NAME, LL_NAME = "Backblaze B2 archive (Sydney)", "Filespace prod-edit-01"
CORRUPT = 9
"""Assets whose B2 copy checksum differs: one kind of reason, more than the page's examples."""
chromium = pytest.mark.skipif(browser.find_chromium() is None,
                              reason="Chromium is not installed (no `chromium` on PATH; Debian: apt-get install "
                                     "chromium): the report page tests need a real headless browser")

SEEN = r"""<script>
(function () {
  var size = /^\d+(\.\d+)? (B|KB|MB|GB|TB|PB)$/, date = /^\d{4}-\d\d-\d\d \d\d:\d\d$/;
  var text = document.body.innerText, cells = [];
  document.querySelectorAll("td").forEach(function (td) {
    var shown = td.innerText.replace(/\u00a0/g, " ").trim();
    if (!size.test(shown) && !date.test(shown)) return;
    var range = document.createRange();
    range.selectNodeContents(td);
    var rects = Array.prototype.filter.call(range.getClientRects(), function (r) { return r.width > 0; });
    var top = Math.min.apply(null, rects.map(function (r) { return r.top; }));
    var bottom = Math.max.apply(null, rects.map(function (r) { return r.bottom; }));
    var line = parseFloat(getComputedStyle(td).lineHeight);
    cells.push({text: shown, lines: Math.round((bottom - top) / line)});
  });
  function table(heading) {
    var found = Array.prototype.find.call(document.querySelectorAll("h2"),
                                          function (h) { return h.innerText.indexOf(heading) === 0; });
    var node = found && found.nextElementSibling;
    while (node && node.tagName !== "TABLE") node = node.nextElementSibling;
    if (!node) return [];
    return Array.prototype.map.call(node.querySelectorAll("tr"), function (tr) {
      return Array.prototype.map.call(tr.children, function (c) { return c.innerText.trim(); });
    });
  }
  var out = document.createElement("pre");
  out.id = "seen";
  out.textContent = JSON.stringify({text: text, cells: cells, reasons: table("Why the rest"),
                                    rows: table("Every format copy")});
  document.body.appendChild(out);
})();
</script>"""


def seen(page, tmp_path, width: int) -> dict:
    """What Chromium shows of `page` at this window width (from a copy of it with SEEN added)."""
    probe = tmp_path / f"seen-{width}.html"
    probe.write_text(browser.with_script(page.read_text(encoding="utf-8"), SEEN), encoding="utf-8")
    dom = browser.dump_dom(probe, width, 900)
    found = re.search(r'<pre id="seen">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    from html import unescape

    return json.loads(unescape(found.group(1)))


@pytest.fixture
def world(emulator, monkeypatch):
    """Named storages; assets of every kind, CORRUPT of them with the same kind of reason, one asset
    with a safe ORIGINAL and a corrupt proxy (in two categories)."""
    world = World(emulator, emulator.add_storage(B2_NAME, method="B2"),
                  emulator.add_storage(LL_NAME, method="FILE"))
    for n, (kind, days) in enumerate([("safe", 120), ("safe", 40), ("only_ll", 60), ("short", 45), ("open", 50)]):
        world.aged_asset(f"clip{n}_{kind}.mov", kind, 1000 * (n + 1) + 7 * n, days)
    for n in range(CORRUPT):
        world.aged_asset(f"A00{n}_C00{n}_interview_take_{n}_with_a_long_camera_roll_name.mov", "corrupt",
                  62000 + 13 * n, 3 + n)
    both = world.aged_asset("A100_both.mov", "safe", 2500, 8)
    proxy = b"proxy of A100"
    emulator.add_file(both.id, "PPRO_PROXY", world.b2, "A100_both_proxy.mp4", proxy,
                      checksum=hashlib.md5(b"rot" + proxy).hexdigest())
    emulator.add_file(both.id, "PPRO_PROXY", world.ll, "A100_both_proxy.mp4", proxy)
    env_for(world, monkeypatch)
    return world


def run_report(capsys, *argv):
    code = cli.main(["report", "--no-progress", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def expected_order(world) -> list[str]:
    """Names of the page's rows: category (what stays first), then the largest first."""
    rows = [(CATEGORY[a.kind], a.size, a.title) for a in world.assets.values()]
    rows.append(("unverified", len(b"proxy of A100"), "A100_both.mov"))
    return [title for _, _, title in sorted(rows, key=lambda r: (ROW_ORDER.index(r[0]), -r[1], r[2]))]


@chromium
@pytest.mark.parametrize("width", [1280, 720])
def test_the_page_names_storages_groups_reasons_sorts_rows_and_wraps_no_size_or_date(world, capsys, tmp_path,
                                                                                    width):
    page = tmp_path / "report.html"
    run_report(capsys, "--html", str(page))

    shown = seen(page, tmp_path, width)

    text = shown["text"]
    assert f"LucidLink storage {LL_NAME}" in text and f"B2 storage {B2_NAME}" in text
    assert world.ll not in text and world.b2 not in text  # no storage id a person can see
    # the reasons: one line per kind, with its count, assets, bytes and a few examples
    reasons = {cells[0]: cells for cells in shown["reasons"][1:]}
    checksum = reasons["B2 copy checksum of … differs"]
    corrupt = [a for a in world.assets.values() if a.kind == "corrupt"]
    proxy = len(b"proxy of A100")
    assert checksum[1:4] == [str(CORRUPT + 1), str(CORRUPT + 1), human_bytes(sum(a.size for a in corrupt) + proxy)]
    examples = [line for line in checksum[4].splitlines() if line.strip()]
    largest = sorted(corrupt, key=lambda a: -a.size)[:3]
    assert [line.split(" (")[0] for line in examples[:3]] == [a.title for a in largest]
    assert examples[3] == f"and {CORRUPT + 1 - 3} more"
    assert len(reasons) == 3  # checksum, size, LucidLink copy still OPEN
    assert text.count("checksum of 'A00") <= CORRUPT + 3  # each file once in the rows, the examples once more
    # every row, in order: category (what stays first), then size, largest first
    assert [cells[1] for cells in shown["rows"][1:]] == expected_order(world)
    # the overlap of the categories' asset counts is said
    assert "1 of the 15 asset(s) has formats in more than one category" in text
    # no size or date cell wraps, at any width
    cells = shown["cells"]
    assert len([c for c in cells if re.match(r"\d{4}-", c["text"])]) == len(world.assets) + 1
    assert len(cells) >= 2 * (len(world.assets) + 1) + len(reasons)  # every row's size and date, each kind's size
    assert [c for c in cells if c["lines"] != 1] == []


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@chromium
def test_a_screenshot_holds_the_whole_page(world, capsys, tmp_path):
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    run_report(capsys, "--html", str(page))

    browser.screenshot(page, png, width=1000)

    width, height = png_size(png)
    assert width == 1000 and height == browser.page_height(page, 1000) + 8
    assert height > 1500  # the charts, the reasons and every row, not one screen of them


def test_browser_helpers_say_what_is_missing_where_chromium_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    page = tmp_path / "p.html"
    page.write_text("<html><body></body></html>")
    assert browser.find_chromium() is None
    with pytest.raises(browser.BrowserMissing, match="apt-get install chromium"):
        browser.screenshot(page, tmp_path / "p.png")


def test_text_json_and_csv_group_the_reasons_by_kind_and_keep_their_fields(world, capsys, tmp_path):
    paths = {kind: tmp_path / f"report.{kind}" for kind in ("csv", "json")}

    out = run_report(capsys, "--csv", str(paths["csv"]), "--json", str(paths["json"]))

    assert f"LucidLink storage {LL_NAME} ({world.ll}), B2 storage {B2_NAME} ({world.b2})" in out
    total = sum(a.size for a in world.assets.values()) + len(b"proxy of A100")
    assert f"({total} bytes) in {len(world.assets) + 1} format copies" in out
    block = out.split("by kind of reason:")[1].split("Age (")[0]
    assert block.count("B2 copy checksum of … differs") == 1
    assert f"in {CORRUPT + 1} format copies of {CORRUPT + 1} asset(s): B2 copy checksum of … differs" in block
    assert block.count("e.g. ") == 3 + 1 + 1 and f"and {CORRUPT + 1 - 3} more" in block
    assert "(1 of the 15 asset(s) has formats in more than one category" in out

    data = json.loads(paths["json"].read_text())
    assert data["ll_storage_name"] == LL_NAME and data["b2_storage_name"] == B2_NAME
    assert data["ll_storage_id"] == world.ll and data["totals"]["assets_in_several_categories"] == 1
    assert len(data["reasons"]) == CORRUPT + 1 + 2  # the exact reasons stay, one per file
    kinds = {k["kind"]: k for k in data["reason_kinds"]}
    assert set(kinds) == {"B2 copy checksum of … differs", "B2 copy of … is … bytes, LucidLink copy is …",
                          "LucidLink copy is still OPEN (being written?)"}
    checksum = kinds["B2 copy checksum of … differs"]
    assert (checksum["category"], checksum["format_copies"], checksum["assets"]) == ("unverified", CORRUPT + 1,
                                                                                     CORRUPT + 1)
    assert [e["bytes"] for e in checksum["examples"]] == sorted((a.size for a in world.assets.values()
                                                                 if a.kind == "corrupt"), reverse=True)[:3]
    assert sum(k["bytes"] for k in data["reason_kinds"]) == sum(r["bytes"] for r in data["reasons"])
    assert [r["name"] for r in data["rows"]] == expected_order(world)

    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert list(rows[0])[:10] == ["asset_id", "name", "format", "category", "result", "bytes", "files",
                                  "last_modified", "age_days", "reason"]
    assert {r["reason_kind"] for r in rows if r["category"] == "unverified"} == {
        "B2 copy checksum of … differs", "B2 copy of … is … bytes, LucidLink copy is …"}
    assert {r["reason_kind"] for r in rows if r["category"] == "safe"} == {""}


def row(name, category, size, reason, asset_id=None):
    return Row(asset_id or name, name, "ORIGINAL", category, "would_keep", reason, size, 1,
               datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_a_reason_kind_leaves_out_names_ids_and_numbers_but_not_words():
    assert masked_reason("would keep: B2 copy checksum of 'A002.mov' differs") == "B2 copy checksum of … differs"
    assert masked_reason("B2 copy checksum of \"it's.mov\" differs") == "B2 copy checksum of … differs"
    assert masked_reason("B2 copy lacks file 'a/b.mov' (and 1,234 more); LucidLink copy has 1,300 files, B2 copy 66") \
        == "B2 copy lacks file …; LucidLink copy has … files, B2 copy …"
    assert masked_reason("iconik gives no status for LucidLink file set 0b7c1c9e-1111-4222-8333-444455556666; cannot "
                       "tell whether it is live") == ("iconik gives no status for LucidLink file set …; cannot tell "
                                                      "whether it is live")
    assert masked_reason("B2 copy of 'x.mov' is OPEN, not CLOSED (incomplete)") \
        != masked_reason("B2 copy of 'x.mov' is MISSING, not CLOSED (incomplete)")
    assert masked_reason("B2 copy is of another version of the asset") == "B2 copy is of another version of the asset"


def test_groups_count_format_copies_assets_and_bytes_and_keep_the_largest_examples():
    rows = [row(f"f{n}.mov", "unverified", 100 + n, f"would keep: B2 copy checksum of 'f{n}.mov' differs")
            for n in range(76)]
    rows += [row("f0.mov", "unverified", 5, "would keep: B2 copy checksum of 'f0_proxy.mp4' differs", "f0.mov"),
             row("open.mov", "incomplete", 10_000, "would keep: LucidLink copy is still OPEN (being written?)"),
             row("safe.mov", "safe", 50_000, "would remove")]

    groups = group_reasons(rows)

    assert [(g.kind, g.category, g.format_copies, g.assets) for g in groups] == [
        ("B2 copy checksum of … differs", "unverified", 77, 76),
        ("LucidLink copy is still OPEN (being written?)", "incomplete", 1, 1)]
    assert groups[0].bytes == sum(100 + n for n in range(76)) + 5
    assert [r.name for r in groups[0].examples] == ["f75.mov", "f74.mov", "f73.mov"]
