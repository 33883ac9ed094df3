"""A job's results in one download: each URL's outcome with the analysis it produced, for the batch user
who fills a catalogue (instead of one GET /v1/analyses/<id> per URL).

NDJSON: one line per URL in submission order, `{position, url, state, analysis_id, error, attempts,
analysis}` with `analysis` as GET /v1/analyses/<id> answers it (null until the URL is done or skipped).
CSV: one row per URL with the whole image's tags (its `product` item) and the articleTypes of the garments
found, for a spreadsheet. Both are read in chunks of the job's URLs, so a job of 10,000 URLs streams in
bounded memory, and both can be read while the job runs (open URLs have no analysis yet).
"""
from __future__ import annotations

import csv
import io
import json
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..models import TASK_COLUMNS, Analysis, Item, JobUrl
from ..store import analysis_json
from .service import outcome_json

CHUNK = 200  # URLs read (with their analyses) per query
TASKS = tuple(TASK_COLUMNS)
CSV_COLUMNS = ("position", "url", "state", "error_code", "analysis_id", "image_sha256",
               *TASKS, *(f"{task}_confidence" for task in TASKS), "colours", "colour_hexes", "garments",
               "garment_articleTypes")


def _chunks(session: Session, job_id: str) -> Iterator[list[tuple[JobUrl, Analysis | None]]]:
    after = -1
    while True:
        rows = session.scalars(select(JobUrl).where(JobUrl.job_id == job_id, JobUrl.position > after)
                               .order_by(JobUrl.position).limit(CHUNK)).all()
        if not rows:
            return
        ids = [row.analysis_id for row in rows if row.analysis_id is not None]
        analyses = {a.id: a for a in session.scalars(
            select(Analysis).where(Analysis.id.in_(ids))
            .options(selectinload(Analysis.image), selectinload(Analysis.items).selectinload(Item.person_labels)))}
        yield [(row, analyses.get(row.analysis_id)) for row in rows]
        after = rows[-1].position
        session.expunge_all()  # what was yielded is written out: keep the identity map to one chunk


def ndjson_lines(session: Session, job_id: str) -> Iterator[str]:
    for chunk in _chunks(session, job_id):
        yield "".join(json.dumps(outcome_json(row) | {"analysis": analysis_json(analysis) if analysis else None})
                      + "\n" for row, analysis in chunk)


def _cell(text: str) -> str:
    """A submitted string as a spreadsheet cell: never read as a formula (a "URL" such as =HYPERLINK(...)
    is stored as given when it fails to parse)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_row(row: JobUrl, analysis: Analysis | None) -> list:
    whole = next((item for item in analysis.items if item.kind == "product"), None) if analysis else None
    garments = [item for item in analysis.items if item.kind == "garment"] if analysis else []
    tags = [getattr(whole, TASK_COLUMNS[task][0]) if whole else "" for task in TASKS]
    confidences = [round(getattr(whole, TASK_COLUMNS[task][1]), 4) if whole else "" for task in TASKS]
    colours = (whole.colours or []) if whole else []  # the whole image's measured colours, backdrop left out
    return [row.position, _cell(row.url), row.state, row.error_code or "", row.analysis_id or "",
            analysis.image.sha256 if analysis else "", *tags, *confidences,
            ";".join(c["name"] for c in colours), ";".join(c["hex"] for c in colours), len(garments),
            ";".join(item.article_type for item in garments)]


def csv_lines(session: Session, job_id: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for chunk in _chunks(session, job_id):
        writer.writerows(csv_row(row, analysis) for row, analysis in chunk)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()  # the header alone, for a job with no URLs


FORMATS = {"ndjson": (ndjson_lines, "application/x-ndjson"), "csv": (csv_lines, "text/csv")}  # name: (lines, mimetype)
