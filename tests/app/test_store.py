import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from app.db import make_engine
from app.models import Analysis, Base, ImageRecord, Item


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
