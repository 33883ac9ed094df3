"""The changes feed: how a recommender or a search index that mirrors the stored tags stays current.

Listing `/v1/items` again finds new items, but not what changed under items already seen: a refreshed
analysis, a person's labels, a deleted image. So every write that changes what the API answers about
items appends an entry in its own transaction (a failed write leaves none):

- `analysis.created`: an analysis was stored (a new image, newer model bundles, or a refresh; `replaces`
  names the analyses a refresh deleted, with their items; `supersedes` the image's analysis that was
  current until now, kept but no longer listed: a copy keeps each image's newest analysis);
- `analysis.updated`: an analysis now shows another source URL (the one it showed was forgotten);
- `item.labelled`: a person's labels were given to an item, or withdrawn;
- `image.deleted`: an image and every analysis of it (`analyses`) are gone.

`GET /v1/changes?cursor=` pages through them. Each entry carries the current state of what it names
(`analysis`, `item`; null once that is gone), read when the page is, so a client sets its copy to it:
applying an entry twice, or an older entry after a newer one, leaves the copy right.

No entry is ever skipped. Ids are drawn when a transaction inserts, but transactions commit in another
order: a reader that passed id 12 could later see 11 commit. On PostgreSQL each entry keeps its
transaction's id (`xid`), pages are ordered by (xid, id), and a page holds only entries of transactions
older than every transaction still running (`pg_snapshot_xmin`): all of those have committed or never
will, and any transaction yet to commit has a larger xid, so it sorts after every cursor handed out. A
long writing transaction holds the feed back until it ends (any on the PostgreSQL server: transaction ids
are the server's, not one database's); it never loses an entry. SQLite has one writer at a time, so there
the id order is the commit order (xid 0).

`flask changes prune --older-than-days N` deletes old entries, never one a subscription has yet to
deliver, and remembers how far it went (`changes_pruned`): a cursor at or before that answers
`cursor_expired` (410), so a client learns it must copy again instead of silently missing entries.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

from sqlalchemy import delete, literal, literal_column, select, true, tuple_
from sqlalchemy.orm import Session, selectinload

from . import store  # the module, not its names: store records changes, and this reads its JSON
from .errors import ApiError
from .models import Analysis, Change, ChangesPruned, ChangeSubscription, Item, iso_utc, utcnow

CHANGE_TYPES = ("analysis.created", "analysis.updated", "item.labelled", "image.deleted")
START = (0, 0)  # before every entry: ids start at 1, transaction ids at 0 (SQLite) or 3 (PostgreSQL)


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def record(session: Session, type: str, *, image_id: int | None = None, analysis_id: int | None = None,
           item_id: int | None = None, detail: dict | None = None) -> None:
    """Append an entry in the session's transaction (it commits or rolls back with the write it records)."""
    if type not in CHANGE_TYPES:
        raise ValueError(f"unknown change type {type!r}")
    xid = literal_column("pg_current_xact_id()::text::bigint") if _postgresql(session) else 0
    session.add(Change(xid=xid, type=type, image_id=image_id, analysis_id=analysis_id, item_id=item_id,
                       detail=detail))


def _settled(session: Session):
    """The entries no running transaction can still add to or come before (see the module's docstring)."""
    if _postgresql(session):
        return Change.xid < literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    return true()


def read_cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return START

    def position(value):
        xid, entry_id = value
        if not (isinstance(xid, int) and isinstance(entry_id, int)):
            raise ValueError
        return xid, entry_id

    return store.decode_cursor(cursor, position)


def latest_cursor(session: Session) -> str:
    """A cursor after every entry there is now: a client that has just copied everything starts here."""
    last = session.execute(select(Change.xid, Change.id).where(_settled(session))
                           .order_by(Change.xid.desc(), Change.id.desc()).limit(1)).first()
    return store.encode_cursor(list(last) if last else list(START))


def pruned_through(session: Session) -> tuple[int, int] | None:
    row = session.get(ChangesPruned, 1)
    return (row.xid, row.entry_id) if row else None


def check_not_pruned(session: Session, position: tuple[int, int]) -> None:
    """cursor_expired when entries after `position` have been pruned: the client must copy again."""
    pruned = pruned_through(session)
    if pruned is not None and tuple(position) < pruned:
        raise ApiError("cursor_expired", "the feed was pruned past this cursor: list /v1/items again after "
                                         "taking GET /v1/changes?from=now, and read on from that cursor")


def read_page(session: Session, cursor: str | None, limit: int, expand: bool = True) -> dict:
    """The entries after `cursor` (at most `limit`), oldest first, with the cursor to read on from and
    whether this page reached the end of what is settled now (`caught_up`)."""
    after = read_cursor(cursor)
    rows = session.scalars(
        select(Change).where(_settled(session), tuple_(Change.xid, Change.id) > tuple_(literal(after[0]), literal(after[1])))
        .order_by(Change.xid, Change.id).limit(limit + 1)).all()
    check_not_pruned(session, after)  # after reading: a prune that committed meanwhile is seen too
    page = rows[:limit]
    position = (page[-1].xid, page[-1].id) if page else after
    states = _current_states(session, page) if expand else None
    return {"changes": [change_json(change, states) for change in page],
            "next_cursor": store.encode_cursor(list(position)), "caught_up": len(rows) <= limit}


def _current_states(session: Session, changes: Iterable[Change]) -> dict:
    """("analysis" | "item", id) -> its JSON now, for every analysis and item the entries name that still exists."""
    changes = list(changes)
    analysis_ids = {c.analysis_id for c in changes if c.type.startswith("analysis.")}
    item_ids = {c.item_id for c in changes if c.type == "item.labelled"}
    states = {}
    if analysis_ids:
        for analysis in session.scalars(select(Analysis).where(Analysis.id.in_(analysis_ids))
                                        .options(selectinload(Analysis.items), selectinload(Analysis.image))):
            states["analysis", analysis.id] = store.analysis_json(analysis)
    if item_ids:
        for item in session.scalars(select(Item).where(Item.id.in_(item_ids))
                                    .options(selectinload(Item.analysis).selectinload(Analysis.image))):
            states["item", item.id] = store.listed_item_json(item)
    return states


def change_json(change: Change, states: dict | None) -> dict:
    body = {"id": change.id, "type": change.type,
            "at": iso_utc(change.created_at),
            "image_id": change.image_id}
    if change.type.startswith("analysis."):
        body["analysis_id"] = change.analysis_id
        if change.type == "analysis.created":
            body["replaces"] = (change.detail or {}).get("replaces", [])
            body["supersedes"] = (change.detail or {}).get("supersedes")
        if states is not None:
            body["analysis"] = states.get(("analysis", change.analysis_id))
    elif change.type == "item.labelled":
        body |= {"item_id": change.item_id, "analysis_id": change.analysis_id}
        if states is not None:
            body["item"] = states.get(("item", change.item_id))
    elif change.type == "image.deleted":
        body["analyses"] = (change.detail or {}).get("analyses", [])
    return body


@dataclasses.dataclass
class Pruned:
    deleted: int
    through: tuple[int, int] | None  # the feed position pruned through (None: nothing to prune)
    held_back_by: int | None  # a subscription whose cursor stopped the prune short of `before`


def prune(session: Session, before: dt.datetime) -> Pruned:
    """Delete the feed's settled entries made before `before`, never one a subscription has yet to
    deliver; cursors at or before the last deleted entry answer cursor_expired from then on."""
    last_old = session.execute(select(Change.xid, Change.id).where(_settled(session), Change.created_at < before)
                               .order_by(Change.xid.desc(), Change.id.desc()).limit(1)).first()
    if last_old is None:
        return Pruned(0, pruned_through(session), None)
    through, held_back_by = tuple(last_old), None
    for subscription in session.scalars(select(ChangeSubscription).order_by(ChangeSubscription.id)):
        position = read_cursor(subscription.cursor)
        if position < through:
            through, held_back_by = position, subscription.id
    deleted = session.execute(delete(Change).where(
        tuple_(Change.xid, Change.id) <= tuple_(literal(through[0]), literal(through[1])))).rowcount
    row = session.get(ChangesPruned, 1)
    if row is None:
        session.add(ChangesPruned(id=1, xid=through[0], entry_id=through[1], pruned_at=utcnow()))
    elif through > (row.xid, row.entry_id):
        row.xid, row.entry_id, row.pruned_at = through[0], through[1], utcnow()
    session.commit()
    return Pruned(deleted, pruned_through(session), held_back_by)
