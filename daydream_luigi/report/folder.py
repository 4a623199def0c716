"""A cohort's reports folder written whole, in order, from the store as it is now: the parsed scores
(`collect`), the tables derived from them (`tables`), the decisions its spec asks for (`decisions`: the gates it
names, its judges against people's labels) and the HTML page drawn from all of them (`page`).

The page is stamped with a fingerprint that also covers what the decisions are made from (the gate files the cohort
names and people's labels, `freshness.fingerprint`), so changing a gate or adding a label rebuilds it.
"""

from daydream_luigi.report import collect, decisions
from daydream_luigi.report.page import write_report as write_html
from daydream_luigi.store.freshness import fingerprint, reports_dir, write_stamp


def write_report(paths, cohort_id: str, gates: list[str] | None = None) -> None:
    """The decisions (by `gates`, default: the gates the cohort's manifest names), then report.html (which shows
    them)."""
    stamp = fingerprint(paths, cohort_id, decisions=True)
    decisions.write_decisions(paths, cohort_id, gates)
    page = write_html(reports_dir(paths, cohort_id), cohort_id, paths.gens)
    write_stamp(paths, cohort_id, page, stamp)


def write_all(paths, cohort_id: str, gates: list[str] | None = None) -> None:
    """Every table, the decisions and the report from what is on disk now (status.json says what is missing or
    failed); `gates` as `write_report` takes them."""
    collect.write_parsed_scores(paths, cohort_id)
    collect.write_derived_tables(paths, cohort_id)
    write_report(paths, cohort_id, gates)
