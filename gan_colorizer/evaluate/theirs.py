"""The figures papers publish for a benchmark split, printed beside ours after an evaluation and marked as theirs,
with one line on how our protocol differs from theirs."""
from __future__ import annotations

from gan_colorizer.data.benchmarks import COMPARED, beside_ours
from gan_colorizer.evaluate.outputs import TABLE, table_lines

COLUMNS = [("label", "{}"), ("whose", "{}"), *[(key, fmt) for key, fmt in TABLE if key in COMPARED]]


def beside_ours_lines(summary: dict) -> list[str]:
    """Ours and the papers' figures in one table, then the protocol line and where the figures come from; or, for a
    split with none, one line saying so and what was searched."""
    bench = summary["benchmark"]
    published = bench["published"]
    if published["source"] is None:
        return [f"published figures for {bench['name']}: no published figure read ({published['searched']})"]
    source = published["source"]
    return [f"published figures for {bench['name']} beside ours: {source['cite']}, column '{published['column']}', "
            f"measured by {source['measured_by'].split(':')[0]} (sources in summary.json: benchmark.published):",
            *table_lines(COLUMNS, beside_ours(summary["models"], published)), published["protocol_note"]]


def print_beside_ours(summary: dict) -> None:
    print("\n".join(beside_ours_lines(summary)), flush=True)
