"""A serving process freezes what is alive once its models have loaded (GC_FREEZE), and only then."""
import gc

import pytest

from app import create_app
from app.pipeline import Pipeline


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("freeze", [True, False])
def test_loading_the_models_freezes_what_is_alive_when_asked(settings, pipeline, monkeypatch, unfrozen, freeze):
    monkeypatch.setattr(Pipeline, "load", classmethod(lambda cls, _settings: pipeline))
    app = create_app(settings.replace(gc_freeze=freeze, similarity_build_at_start=False))
    assert gc.get_freeze_count() == 0  # creating the app freezes nothing
    holder = app.extensions["pipeline"]
    assert holder.load() is pipeline
    if freeze:
        assert gc.get_freeze_count() > 10_000  # the libraries and models, not a handful
        assert not any(o is holder for o in gc.get_objects())  # out of the collector's generations
    else:
        assert gc.get_freeze_count() == 0
    app.extensions["engine"].dispose()
