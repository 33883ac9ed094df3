import json
import threading
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, Table, create_engine, func, inspect, select, text
from sqlalchemy.orm import Session, lazyload, sessionmaker

from app.db import alembic_config, make_engine, upgrade
from app.models import TASK_COLUMNS, Analysis, Base, ImageRecord, Item


# The tables each later revision adds: a database migrated to an earlier one lacks them, and nothing else.
LATER_TABLES = {"0009": ("changes", "changes_pruned", "change_subscriptions")}
TABLES_ADDED = {"0007": ("item_labels", "job_idempotency_keys", *LATER_TABLES["0009"]),
                "0008": ("job_idempotency_keys", *LATER_TABLES["0009"]), **LATER_TABLES, "0010": ()}


# Columns a later revision widens: (table, column) -> that revision.
LATER_COLUMN_TYPES = {("analyses", "bundle_key"): "0010"}


def schema_diff_before(revision: str, connection) -> list:
    """The models against a database migrated to the revision before `revision`, but for the tables it and
    the later revisions add and the columns later revisions widen."""
    added = TABLES_ADDED[revision]

    def widened_later(change) -> bool:  # a column type change comes as a list of one ("modify_type", ...)
        return (isinstance(change, list) and change[0][0] == "modify_type"
                and LATER_COLUMN_TYPES.get((change[0][2], change[0][3]), "") >= revision)

    return [change for change in compare_metadata(MigrationContext.configure(connection), Base.metadata)
            if not widened_later(change)
            and not (isinstance(change, tuple) and change[0] == "add_table" and change[1].name in added)
            and not (isinstance(change, tuple) and change[0] == "add_index" and change[1].table.name in added)]


def test_migrations_match_the_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def _items(n=2):
    tag = {"label": "x", "confidence": 0.5, "top3": [{"label": "x", "confidence": 0.5}]}
    return [{"position": i, "kind": "garment" if i else "product", "box": None, "mask": None, "detector": None,
             "category": {t: tag for t in ("gender", "masterCategory", "subCategory", "articleType")} | {"path_confidence": 0.5},
             "style": {t: tag for t in ("baseColour", "season", "usage")}, "colours": []} for i in range(n)]


def test_concurrent_posts_of_the_same_image_store_it_once(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the concurrency guarantee is tested on PostgreSQL (set TEST_DATABASE_URL)")
    from app.store import save_analysis

    engine = make_engine(database_url)
    Session = sessionmaker(engine, expire_on_commit=False)
    barrier, results, errors = threading.Barrier(8), [], []

    def worker():
        session = Session()
        try:
            barrier.wait()
            analysis, created = save_analysis(session, sha256="a" * 64, width=10, height=10, url="http://x/y.jpg",
                                              bundle_key="k", bundles={}, timings={}, items=_items(), refresh=False)
            results.append((analysis.id, created))
        except Exception as error:  # noqa: BLE001
            errors.append(error)
        finally:
            session.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({analysis_id for analysis_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with Session() as session:
        assert [session.scalar(select(func.count()).select_from(m)) for m in (ImageRecord, Analysis, Item)] == [1, 1, 2]
    engine.dispose()


# ---- category.constrained_by: its own column (migration 0005) ----------------------------------------------

def test_constrained_by_is_stored_in_its_column_not_in_top3(database_url):
    from app.store import item_json, save_analysis

    items = _items(3)
    items[1]["category"] = items[1]["category"] | {"constrained_by": "detector:footwear"}
    items[2]["category"] = items[2]["category"] | {"constrained_by": None}
    engine = make_engine(database_url)
    with Session(engine) as session:
        analysis, created = save_analysis(session, sha256="c" * 64, width=10, height=10, url=None, bundle_key="k",
                                          bundles={}, timings={}, items=items, refresh=False)
        assert created
        # not loaded with the items: item_labels (0007) does not exist yet at this revision
        rows = session.scalars(select(Item).order_by(Item.position).options(lazyload(Item.person_labels))).all()
        assert [r.category_constrained_by for r in rows] == [None, "detector:footwear", None]
        assert all(set(r.top3) == set(TASK_COLUMNS) for r in rows)  # nothing but the tasks' top3 in top3
        assert [item_json(r)["category"]["constrained_by"] for r in rows] == [None, "detector:footwear", None]
        footwear = session.scalars(select(Item).where(Item.category_constrained_by == "detector:footwear")).all()
        assert [r.position for r in footwear] == [1]
    engine.dispose()


@pytest.fixture
def empty_database_url(tmp_path, postgres_server_url):
    """A database without any schema (its own, also on PostgreSQL: the shared test database is at head)."""
    if not postgres_server_url:
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    name = f"fashion_tagger_migration_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _item_values(analysis_id, position, top3):
    values = {"analysis_id": analysis_id, "position": position, "kind": "garment" if position else "product",
              "box": None, "mask": None, "category_path_confidence": 0.5, "top3": top3, "colours": []}
    for value_column, confidence_column in TASK_COLUMNS.values():
        values |= {value_column: "x", confidence_column: 0.5}
    return values


def test_migration_0005_moves_constrained_by_out_of_top3_and_back(empty_database_url):
    url = empty_database_url
    upgrade(url, "0004")
    tasks = {task: [{"label": "x", "confidence": 0.5}] for task in TASK_COLUMNS}
    engine = create_engine(url)
    with engine.begin() as connection:  # rows as the top3 hack stored them, and older ones
        tables = MetaData()
        images, analyses, items = (Table(n, tables, autoload_with=connection) for n in ("images", "analyses", "items"))
        assert "category_constrained_by" not in items.c
        image_id = connection.execute(images.insert().values(sha256="d" * 64, width=1, height=1)).inserted_primary_key[0]
        analysis_id = connection.execute(analyses.insert().values(
            image_id=image_id, bundle_key="k", bundles={}, timings_ms={})).inserted_primary_key[0]
        connection.execute(items.insert(), [
            _item_values(analysis_id, 0, tasks),
            _item_values(analysis_id, 1, tasks | {"category_constrained_by": "detector:footwear"}),
            _item_values(analysis_id, 2, tasks)])
    engine.dispose()

    upgrade(url, "0005")
    engine = create_engine(url)
    with Session(engine) as session:
        # not loaded with the items: item_labels (0007) does not exist yet at this revision
        rows = session.scalars(select(Item).order_by(Item.position).options(lazyload(Item.person_labels))).all()
        assert [r.category_constrained_by for r in rows] == [None, "detector:footwear", None]
        assert all(r.top3 == tasks for r in rows)
    with engine.connect() as connection:
        diff = schema_diff_before("0007", connection)
    assert diff == []
    engine.dispose()

    command.downgrade(alembic_config(url), "0004")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert "category_constrained_by" not in {c["name"] for c in inspect(connection).get_columns("items")}
        items = Table("items", MetaData(), autoload_with=connection)
        top3 = connection.execute(select(items.c.top3).order_by(items.c.position)).scalars().all()
        assert top3 == [tasks, tasks | {"category_constrained_by": "detector:footwear"}, tasks]
        if url.startswith("sqlite"):  # the rebuilt table keeps AUTOINCREMENT (ids only grow)
            sql = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'items'")).scalar()
            assert "AUTOINCREMENT" in sql
    engine.dispose()


def insert_images_and_analyses(url: str, images: int, analyses_of: list[int]) -> None:
    """Rows in a database migrated to an earlier revision (through its own tables, not the models): `images`
    images, then an analysis of each image id in `analyses_of`."""
    engine = create_engine(url)
    with engine.begin() as connection:
        image_table = Table("images", MetaData(), autoload_with=connection)
        analysis_table = Table("analyses", MetaData(), autoload_with=connection)
        for n in range(images):
            connection.execute(image_table.insert().values(sha256="abcdefgh"[n] * 64, width=1, height=1))
        for image_id in analyses_of:
            connection.execute(analysis_table.insert().values(image_id=image_id, bundle_key=f"k-{uuid.uuid4().hex}",
                                                              bundles={}, timings_ms={}))
    engine.dispose()


def test_migration_0006_keeps_the_images_and_never_reuses_their_ids(empty_database_url):
    url = empty_database_url
    upgrade(url, "0005")
    insert_images_and_analyses(url, images=2, analyses_of=[2])

    upgrade(url, "0006")
    engine = make_engine(url)  # the app's engine: foreign keys enforced on SQLite too
    with Session(engine) as session:
        assert [(i.id, i.sha256[0]) for i in session.scalars(select(ImageRecord).order_by(ImageRecord.id))] == [(1, "a"), (2, "b")]
        assert session.scalars(select(Analysis.image_id)).all() == [2]
        session.delete(session.get(ImageRecord, 2))
        session.commit()
        assert session.scalar(select(func.count()).select_from(Analysis)) == 0  # cascaded
        session.add(ImageRecord(sha256="c" * 64, width=1, height=1))
        session.commit()
        assert session.scalars(select(ImageRecord.id).order_by(ImageRecord.id)).all() == [1, 3]  # 2 is never reused
    with engine.connect() as connection:
        assert schema_diff_before("0007", connection) == []
    engine.dispose()

    command.downgrade(alembic_config(url), "0005")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id FROM images ORDER BY id")).scalars().all() == [1, 3]
    engine.dispose()


def test_migration_0007_labels_and_back_to_the_model_tags(empty_database_url):
    url = empty_database_url
    upgrade(url, "0007")
    engine = make_engine(url)
    with Session(engine) as session:
        session.execute(ImageRecord.__table__.insert().values(sha256="e" * 64, width=1, height=1))
        session.execute(Analysis.__table__.insert().values(image_id=1, bundle_key="k", bundles={}, timings_ms={}))
        session.execute(Item.__table__.insert().values(_item_values(1, 0, {}) | {"article_type": "Flats",
                                                                                  "article_type_confidence": 1.0}))
        session.execute(text("INSERT INTO item_labels (item_id, labels, model_tags, revision, updated_at) VALUES "
                             "(1, :labels, :model, 7, '2026-12-05 00:00:00')"),
                        {"labels": '{"articleType": "Flats"}', "model": '{"articleType": {"label": "x", "confidence": 0.5}}'})
        session.commit()
        assert session.get(Item, 1).person_labels.labels == {"articleType": "Flats"}
    with engine.connect() as connection:
        assert schema_diff_before("0008", connection) == []
    engine.dispose()

    command.downgrade(alembic_config(url), "0006")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert "item_labels" not in inspect(connection).get_table_names()
        # the person's label leaves with its table: the model's tag is back in the item's columns
        assert connection.execute(text("SELECT article_type, article_type_confidence FROM items")).one() == ("x", 0.5)
    engine.dispose()


def test_migration_0008_idempotency_keys_and_back(empty_database_url):
    url = empty_database_url
    upgrade(url, "0008")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert schema_diff_before("0009", connection) == []
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (id, state, refresh, callback_attempts, created_at) "
                                "VALUES ('j1', 'done', false, 0, '2026-12-05 00:00:00')"))
        insert = text("INSERT INTO job_idempotency_keys (scope, key, fingerprint, job_id, created_at) "
                      "VALUES ('anonymous', 'k', 'f', 'j1', '2026-12-05 00:00:00')")
        connection.execute(insert)
    with pytest.raises(Exception, match="(?i)unique"), engine.begin() as connection:
        connection.execute(insert)  # one job per key and scope
    engine.dispose()
    command.downgrade(alembic_config(url), "0007")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert "job_idempotency_keys" not in inspect(connection).get_table_names()
        assert connection.execute(text("SELECT id FROM jobs")).scalars().all() == ["j1"]
    engine.dispose()


def test_migration_0009_the_feed_starts_with_every_analysis_stored_before_it(empty_database_url):
    url = empty_database_url
    upgrade(url, "0008")
    insert_images_and_analyses(url, images=2, analyses_of=[2, 1, 2])
    upgrade(url, "0009")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert schema_diff_before("0010", connection) == []
        rows = connection.execute(text("SELECT id, xid, type, image_id, analysis_id, detail FROM changes ORDER BY id")).all()
    assert [(r.id, r.xid, r.type, r.image_id, r.analysis_id) for r in rows] == [
        (1, 0, "analysis.created", 2, 1), (2, 0, "analysis.created", 1, 2), (3, 0, "analysis.created", 2, 3)]
    details = [json.loads(r.detail) if isinstance(r.detail, str) else r.detail for r in rows]  # text on SQLite
    assert details == [{"replaces": []}] * 3
    engine.dispose()
    command.downgrade(alembic_config(url), "0008")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert not set(LATER_TABLES["0009"]) & set(inspect(connection).get_table_names())
        assert connection.execute(text("SELECT count(*) FROM analyses")).scalar() == 3
    engine.dispose()


def test_an_analysis_key_longer_than_200_characters_is_stored(database_url):
    """The served key names every option that changes the tags (207 characters with feature heads):
    PostgreSQL refused it before migration 0010."""
    from app.store import save_analysis

    engine = make_engine(database_url)
    key = "detector:v|" + "classifier:v+flip+vote-abcdef123456+heads-abcdef123456/category|" * 8
    with Session(engine) as session:
        analysis, created = save_analysis(session, sha256="d" * 64, width=10, height=10, url=None, bundle_key=key,
                                          bundles={}, timings={}, items=_items(), refresh=False)
        assert created and len(key) > 500 and session.get(Analysis, analysis.id).bundle_key == key
    engine.dispose()


def test_migration_0010_widens_the_analysis_key_and_back(empty_database_url):
    url = empty_database_url
    upgrade(url, "0009")
    insert_images_and_analyses(url, images=2, analyses_of=[2, 1, 2])
    upgrade(url, "0010")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.execute(text("SELECT count(*) FROM analyses")).scalar() == 3
    engine.dispose()
    command.downgrade(alembic_config(url), "0009")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert schema_diff_before("0010", connection) == []
        assert connection.execute(text("SELECT count(*) FROM analyses")).scalar() == 3
    engine.dispose()
